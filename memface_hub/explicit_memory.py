"""The explicit memory of MemFace (paper Sec. 3.3, Alg. 1), in one place.

A speaker's explicit memory maps **keys**, mouth vertices ``(N, V, 3)``, to **values**, mouth patches
``(N, 3, h, w)`` uint8 cut from that speaker's own frames. Everything that holds, chooses or reads one
uses this module:

* :func:`farthest_point_selection` — Alg. 1, the N entries chosen from a speaker's frames, both for the
  shared artifact (:class:`memface_hub.speaker.SpeakerMemory`) and for training (:class:`MemoryBank`);
* :class:`MemoryBank` — the same arrays in training, with each entry's source ``(clip, frame)``;
* :func:`leakage_mask` — the leakage rule: a training frame never reads the entry of its own frame or of
  its ±:data:`LEAKAGE_FRAMES` neighbours (else the renderer learns to copy);
* :class:`EncodedMemory` — the memory as the renderer reads it (keys, the values through ``W_v``, the
  normalised patches), made once per speaker by :meth:`memface_hub.renderer.MemFaceRenderer.encode` and
  passed whole to ``MemFaceRenderer.forward(..., memory=...)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

LEAKAGE_FRAMES = 2


def farthest_point_selection(vertices: np.ndarray, count: int, valid: np.ndarray | None = None,
                             start: int | None = None) -> np.ndarray:
    """Alg. 1: greedy farthest-point selection by RMS distance between mouth shapes.

    vertices ``(T, V, 3)``; returns ``(min(count, #valid),)`` frame indices. Starts from ``start``
    (default: the valid frame closest to the mean shape); each step adds the frame whose
    smallest RMS distance to the chosen set is largest. Vectorised: one ``(T,)`` distance
    update per chosen frame.
    """
    flat = np.asarray(vertices, np.float64).reshape(len(vertices), -1)
    candidates = np.flatnonzero(np.ones(len(flat), bool) if valid is None else np.asarray(valid, bool))
    if candidates.size == 0:
        raise ValueError("no valid frames to select memory entries from")
    points = flat[candidates]
    dims = points.shape[1]
    if start is None:
        first = int(np.argmin(((points - points.mean(0)) ** 2).sum(1)))
    else:
        matches = np.flatnonzero(candidates == start)
        if matches.size == 0:
            raise ValueError(f"start frame {start} is not a valid frame")
        first = int(matches[0])
    count = min(int(count), len(points))
    chosen = [first]
    nearest = np.sqrt(((points - points[first]) ** 2).sum(1) / dims)   # RMS distance to the chosen set
    for _ in range(count - 1):
        pick = int(np.argmax(nearest))
        chosen.append(pick)
        nearest = np.minimum(nearest, np.sqrt(((points - points[pick]) ** 2).sum(1) / dims))
    return candidates[np.array(chosen)]


@dataclass
class MemoryBank:
    """The explicit memory used in training: keys ``(N, V, 3)``, patches ``(N, 3, h, w)`` uint8,
    and each entry's source ``(clip id, frame)`` for the leakage rule."""

    keys: np.ndarray
    patches: np.ndarray
    clips: np.ndarray
    frames: np.ndarray

    def leakage(self, clip: str, frame: int) -> np.ndarray:
        """``(N,)`` bool: the entries the frame ``frame`` of ``clip`` must not read (:func:`leakage_mask`)."""
        return leakage_mask(self.clips, self.frames, clip, frame)


def leakage_mask(entry_clips: np.ndarray, entry_frames: np.ndarray, clip: str, frame: int) -> np.ndarray:
    """The leakage rule: ``(N,)`` bool, true for the entries cut from ``frame`` of ``clip`` or from its
    ±:data:`LEAKAGE_FRAMES` neighbours."""
    return (np.asarray(entry_clips) == clip) & (np.abs(np.asarray(entry_frames) - frame) <= LEAKAGE_FRAMES)


@dataclass
class EncodedMemory:
    """A speaker's explicit memory as the renderer reads it: keys ``(N, V, 3)``, values ``(N, C, hb, wb)``
    (the patches through ``W_v``) and, for a renderer that is given the retrieved mouth image, the patches
    ``(N, 3, h, w)`` in the memory's colour units (else ``None``)."""

    keys: torch.Tensor
    values: torch.Tensor
    patches: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> EncodedMemory:
        """A copy on ``device`` in ``dtype`` (what is not given is kept)."""
        move = lambda tensor: None if tensor is None else tensor.to(device=device, dtype=dtype)  # noqa: E731
        return EncodedMemory(move(self.keys), move(self.values), move(self.patches))

    def take(self, entries: torch.Tensor | np.ndarray) -> EncodedMemory:
        """Some of the entries (e.g. a random subset per training step)."""
        entries = torch.as_tensor(entries, device=self.keys.device)
        return EncodedMemory(self.keys[entries], self.values[entries],
                             None if self.patches is None else self.patches[entries])
