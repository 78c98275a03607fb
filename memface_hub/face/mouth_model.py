"""Linear mouth model: expression coefficients ↔ canonical mouth vertices (docs/DESIGN.md §3).

``verts(e) = neutral + B · e`` where ``B`` holds orthonormal principal directions of
mouth-vertex deltas from each speaker's neutral mouth. The PCA is *uncentred*, so ``e = 0``
is the neutral mouth and the formula is exact (and differentiable for the vertex loss).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..arrays_io import load_arrays, save_arrays
from .landmarks import MOUTH_VERTICES

NUM_MOUTH_VERTICES = len(MOUTH_VERTICES)


class MouthModel:
    """basis ``(K, V*3)`` float32 with orthonormal rows; ``explained_variance`` ``(K,)``."""

    def __init__(self, basis: np.ndarray, explained_variance: np.ndarray | None = None):
        basis = np.asarray(basis, np.float32)
        if basis.ndim != 2 or basis.shape[1] != NUM_MOUTH_VERTICES * 3:
            raise ValueError(f"mouth basis must be (K, {NUM_MOUTH_VERTICES * 3}), got {basis.shape}")
        if not np.isfinite(basis).all():
            raise ValueError("mouth basis contains non-finite values")
        self.basis = basis
        self.explained_variance = (np.zeros(len(basis), np.float32) if explained_variance is None
                                   else np.asarray(explained_variance, np.float32))

    @property
    def num_components(self) -> int:
        return int(self.basis.shape[0])

    @classmethod
    def fit(cls, deltas: np.ndarray, num_components: int = 16) -> MouthModel:
        """Fit on deltas ``(N, V, 3)`` = canonical vertices − the speaker's neutral mouth."""
        deltas = np.asarray(deltas, np.float64).reshape(len(deltas), -1)
        if len(deltas) < 2:
            raise ValueError(f"need at least 2 frames to fit a mouth model, got {len(deltas)}")
        num_components = min(int(num_components), *deltas.shape)
        _, singular, vt = np.linalg.svd(deltas, full_matrices=False)
        energy = singular ** 2
        return cls(vt[:num_components], energy[:num_components] / energy.sum())

    def encode(self, vertices: np.ndarray, neutral: np.ndarray) -> np.ndarray:
        """Vertices ``(..., V, 3)`` → coefficients ``(..., K)``."""
        vertices = np.asarray(vertices, np.float32)
        deltas = (vertices - neutral).reshape(*vertices.shape[:-2], -1)
        return deltas @ self.basis.T

    def decode(self, coefficients: np.ndarray, neutral: np.ndarray) -> np.ndarray:
        """Coefficients ``(..., K)`` → vertices ``(..., V, 3)``."""
        coefficients = np.asarray(coefficients, np.float32)
        deltas = coefficients @ self.basis
        return deltas.reshape(*coefficients.shape[:-1], NUM_MOUTH_VERTICES, 3) + neutral

    def save(self, path: str | os.PathLike) -> Path:
        return save_arrays(path, {"basis": self.basis, "explained_variance": self.explained_variance},
                           metadata={"format": "memface-mouth-model", "version": "1"})

    @classmethod
    def load(cls, path: str | os.PathLike) -> MouthModel:
        tensors = load_arrays(path)
        missing = {"basis", "explained_variance"} - set(tensors)
        if missing:
            raise ValueError(f"{path}: mouth model lacks {sorted(missing)}")
        return cls(tensors["basis"], tensors["explained_variance"])
