"""Losses of the paper, as importable functions."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class A2ELoss:
    """Eq. 4 terms (scalars). ``total = λ_e·expression + λ_v·vertex + λ_r·regulariser``."""

    total: torch.Tensor
    expression: torch.Tensor
    vertex: torch.Tensor
    regulariser: torch.Tensor


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values (B, T, ...)`` over frames where ``mask (B, T)`` is True."""
    weights = mask.to(values.dtype).reshape(mask.shape + (1,) * (values.dim() - mask.dim()))
    count = (weights.sum() * values[0, 0].numel()).clamp_min(1.0)
    return (values * weights).sum() / count


def a2e_loss(predicted: torch.Tensor, target: torch.Tensor, predicted_vertices: torch.Tensor,
             target_vertices: torch.Tensor, mask: torch.Tensor, regulariser: torch.Tensor,
             expression_weight: float = 1.0, vertex_weight: float = 1.0, regulariser_weight: float = 0.01) -> A2ELoss:
    """Eq. 4: ``λ_e·|ê − e|₁ + λ_v·‖verts(ê) − verts(e)‖² + λ_r·R``.

    predicted/target ``(B, T, K)``; vertices ``(B, T, V, 3)``; mask ``(B, T)`` True at real,
    valid frames; regulariser: the memory's R (scalar).
    """
    expression = masked_mean((predicted - target).abs(), mask)
    vertex = masked_mean(((predicted_vertices - target_vertices) ** 2).sum(-1), mask)
    total = expression_weight * expression + vertex_weight * vertex + regulariser_weight * regulariser
    return A2ELoss(total, expression, vertex, regulariser)
