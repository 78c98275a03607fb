"""Losses of the paper, as importable functions: eq. 4 (audio-to-expression) and eq. 6 (renderer),
with the discriminator's hinge loss for eq. 6's GAN term."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class A2ELoss:
    """Eq. 4 terms (scalars). ``total = λ_e·expression + λ_v·vertex + λ_r·regulariser`` (+ ``λ_d·velocity``,
    an addition to the paper: off unless asked for)."""

    total: torch.Tensor
    expression: torch.Tensor
    vertex: torch.Tensor
    regulariser: torch.Tensor
    velocity: torch.Tensor | None = None


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values (B, T, ...)`` over frames where ``mask (B, T)`` is True."""
    weights = mask.to(values.dtype).reshape(mask.shape + (1,) * (values.dim() - mask.dim()))
    count = (weights.sum() * values[0, 0].numel()).clamp_min(1.0)
    return (values * weights).sum() / count


def a2e_loss(predicted: torch.Tensor, target: torch.Tensor, predicted_vertices: torch.Tensor,
             target_vertices: torch.Tensor, mask: torch.Tensor, regulariser: torch.Tensor,
             expression_weight: float = 1.0, vertex_weight: float = 1.0, regulariser_weight: float = 0.01,
             velocity_weight: float = 0.0) -> A2ELoss:
    """Eq. 4: ``λ_e·|ê − e|₁ + λ_v·‖verts(ê) − verts(e)‖² + λ_r·R``, plus (``velocity_weight`` λ_d > 0) the
    velocity term ``λ_d·‖Δverts(ê) − Δverts(e)‖²`` over consecutive valid frames, which asks for the
    target's frame-to-frame motion instead of per-frame jitter around it.

    predicted/target ``(B, T, K)``; vertices ``(B, T, V, 3)``; mask ``(B, T)`` True at real,
    valid frames; regulariser: the memory's R (scalar).
    """
    expression = masked_mean((predicted - target).abs(), mask)
    difference = predicted_vertices - target_vertices                                   # (B, T, V, 3)
    vertex = masked_mean((difference ** 2).sum(-1), mask)
    total = expression_weight * expression + vertex_weight * vertex + regulariser_weight * regulariser
    velocity = None
    if velocity_weight:
        velocity = masked_mean(((difference[:, 1:] - difference[:, :-1]) ** 2).sum(-1), mask[:, 1:] & mask[:, :-1])
        total = total + velocity_weight * velocity
    return A2ELoss(total, expression, vertex, regulariser, velocity)


@dataclass
class RendererLoss:
    """Eq. 6 terms (scalars). ``total = λ_1·l1 + λ_p·perceptual + λ_g·gan + λ_r·regulariser``."""

    total: torch.Tensor
    l1: torch.Tensor
    perceptual: torch.Tensor
    gan: torch.Tensor
    regulariser: torch.Tensor


def renderer_loss(output: torch.Tensor, target: torch.Tensor, box: tuple[int, int, int, int],
                  discriminator=None, perceptual=None, regulariser: torch.Tensor | None = None,
                  l1_weight: float = 1.0, perceptual_weight: float = 0.1, gan_weight: float = 0.01,
                  regulariser_weight: float = 0.01) -> RendererLoss:
    """Eq. 6 for the renderer's composited ``output`` and the ground truth ``target`` ``(B, 3, S, S)`` in
    [0, 1]: L1 on the whole crop, the perceptual distance and the generator's GAN term on the mouth box
    ``(top, bottom, left, right)``; ``discriminator`` / ``perceptual`` ``None`` (or weight 0) drop a term;
    ``regulariser``: an implicit memory's R (the renderer ablation's variant)."""
    top, bottom, left, right = box
    fake, real = output[:, :, top:bottom, left:right], target[:, :, top:bottom, left:right]
    zero = output.new_zeros(())
    l1 = (output - target).abs().mean()
    distance = perceptual(fake.float(), real.float()) if perceptual is not None and perceptual_weight else zero
    gan = -discriminator(fake).mean() if discriminator is not None and gan_weight else zero
    regulariser = zero if regulariser is None else regulariser
    total = l1_weight * l1 + perceptual_weight * distance + gan_weight * gan + regulariser_weight * regulariser
    return RendererLoss(total, l1, distance, gan, regulariser)


def discriminator_hinge_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The patch discriminator's hinge loss: ``mean(relu(1 − D(real))) + mean(relu(1 + D(fake)))``."""
    return torch.relu(1 - real_logits).mean() + torch.relu(1 + fake_logits).mean()
