"""The key–value memory read shared by both MemFace memories (paper eq. 1–2).

``a = softmax((q W_q)(K W_k)^T / sqrt(d))``, ``read(q) = a · (V W_v)``.

* :class:`ImplicitMemory` (Sec. 3.2, eq. 3): ``K`` and ``V`` are learned parameters
  (M = 1000 slots of width 64 by default) inside the audio-to-expression model.
* The explicit memories pass their keys and values in: the renderer's per-speaker memory
  (mouth vertices → mouth patches, Sec. 3.3) and the a2e ablation's "explicit" memory
  (audio features → expressions of training frames).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class MemoryReadOutput:
    """read: ``(batch, queries, output_dim)``; attention: ``(batch, queries, slots)``."""

    read: torch.Tensor
    attention: torch.Tensor


class KeyValueMemoryRead(nn.Module):
    """Eq. 1–2 with learned projections ``W_q``, ``W_k``, ``W_v``; optional top-k sparsification.

    query ``(B, Q, query_dim)``, keys ``(M, key_dim)`` or ``(B, M, key_dim)``, values
    ``(M, value_dim)`` or ``(B, M, value_dim)`` → :class:`MemoryReadOutput`.
    """

    def __init__(self, query_dim: int, key_dim: int, value_dim: int | None, attention_dim: int,
                 output_dim: int | None, top_k: int | None = None):
        super().__init__()
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be ≥ 1 or None, got {top_k}")
        self.query_proj = nn.Linear(query_dim, attention_dim)   # W_q
        self.key_proj = nn.Linear(key_dim, attention_dim)       # W_k
        # W_v; ``value_dim=None`` when the caller projects the values itself (the renderer's
        # patch encoder is its W_v), then values of any shape (M, ...) are read as they are.
        self.value_proj = nn.Linear(value_dim, output_dim) if value_dim is not None else nn.Identity()
        self.scale = 1.0 / math.sqrt(attention_dim)
        self.top_k = top_k

    def forward(self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                exclude: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> MemoryReadOutput:
        """``exclude`` ``(B, Q, M)`` bool masks slots a query must not read (e.g. its own frame);
        ``bias`` ``(B, Q, M)`` is added to the attention logits (e.g. a distance prior)."""
        projected_keys = self.key_proj(keys)                                      # (M, A) or (B, M, A)
        projected_values = self.value_proj(values)                                # (M, O) or (B, M, O)
        item_shape = projected_values.shape[keys.dim() - 1:]                      # one value's shape: (O,), (C, h, w)
        projected_values = projected_values.flatten(keys.dim() - 1)               # (M, O') or (B, M, O')
        scores = self.query_proj(query) @ projected_keys.transpose(-1, -2) * self.scale  # (B, Q, M)
        if bias is not None:
            scores = scores + bias
        if exclude is not None:
            scores = scores.masked_fill(exclude, float("-inf"))
        if self.top_k is not None and self.top_k < scores.shape[-1]:
            threshold = scores.topk(self.top_k, dim=-1).values[..., -1:]
            scores = scores.masked_fill(scores < threshold, float("-inf"))
        attention = scores.softmax(dim=-1)                                        # (B, Q, M)
        read = (attention @ projected_values).unflatten(-1, item_shape)           # (B, Q, *item_shape)
        return MemoryReadOutput(read, attention)


def slot_diversity(slots: torch.Tensor) -> torch.Tensor:
    """``mean_{i≠j} |cos(s_i, s_j)|`` of ``(M, D)`` slots: the regulariser R keeps slots apart."""
    normalised = F.normalize(slots, dim=-1)
    cosine = (normalised @ normalised.T).abs()                                    # (M, M)
    count = slots.shape[0]
    return (cosine.sum() - cosine.diagonal().sum()) / (count * (count - 1))


class ImplicitMemory(nn.Module):
    """Learned key–value slots read by the encoder output (Sec. 3.2, eq. 3: ``z = h + read(h)``)."""

    def __init__(self, query_dim: int, num_slots: int = 1000, slot_dim: int = 64, top_k: int | None = None,
                 output_dim: int | None = None):
        super().__init__()
        if num_slots < 2 or slot_dim < 1:
            raise ValueError(f"need num_slots ≥ 2 and slot_dim ≥ 1, got {num_slots}, {slot_dim}")
        self.keys = nn.Parameter(torch.randn(num_slots, slot_dim) / math.sqrt(slot_dim))    # K
        self.values = nn.Parameter(torch.randn(num_slots, slot_dim) / math.sqrt(slot_dim))  # V
        self.reader = KeyValueMemoryRead(query_dim, slot_dim, slot_dim, slot_dim, output_dim or query_dim, top_k)

    def forward(self, query: torch.Tensor) -> MemoryReadOutput:
        return self.reader(query, self.keys, self.values)

    def regulariser(self) -> torch.Tensor:
        """R of eq. 4: slot diversity of keys plus values."""
        return slot_diversity(self.keys) + slot_diversity(self.values)

    @torch.no_grad()
    def reset_(self, generator: torch.Generator | None = None) -> None:
        """Replace the learned slots by normal random values (the paper's toy test, Fig. 9)."""
        for slots in (self.keys, self.values):
            slots.copy_(torch.randn(slots.shape, generator=generator) * slots.std())
