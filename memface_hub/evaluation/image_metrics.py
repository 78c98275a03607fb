"""Per-frame image metrics of the renderer, exactly as docs/EVALUATION.md defines them.

All images are uint8 RGB ``(height, width, 3)``, normally the mouth box of an aligned S×S crop
(:func:`mouth_box_crop`). Landmarks are the tracker's ``(478, 2|3)`` pixel coordinates in the crop.
The perceptual distance lives in :mod:`memface_hub.evaluation.perceptual`.
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ..face.crop import CropLayout
from ..face.landmarks import LIPS


def _check_image(image: np.ndarray, name: str) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"{name} must be uint8 RGB (height, width, 3), got {image.dtype} {image.shape}")
    return image


def _check_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = _check_image(a, "a"), _check_image(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")
    return a, b


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB (data range 255); ``inf`` for identical images."""
    a, b = _check_pair(a, b)
    if np.array_equal(a, b):
        return float("inf")
    return float(peak_signal_noise_ratio(a, b, data_range=255))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity (skimage defaults: 7×7 uniform window), averaged over RGB channels."""
    a, b = _check_pair(a, b)
    return float(structural_similarity(a, b, data_range=255, channel_axis=-1))


def sharpness(image: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image (``cv2.Laplacian``, ``CV_64F``)."""
    grey = cv2.cvtColor(_check_image(image, "image"), cv2.COLOR_RGB2GRAY)  # (H, W) uint8
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def sharpness_ratio(output: np.ndarray, truth: np.ndarray) -> float:
    """``sharpness(output) / sharpness(truth)``: 1.0 is ideal, below 1 is blur."""
    reference = sharpness(truth)
    if reference == 0.0:
        raise ValueError("the ground-truth image is flat (zero Laplacian variance); "
                         "its sharpness ratio is undefined")
    return sharpness(output) / reference


def lip_landmark_distance(landmarks_a: np.ndarray, landmarks_b: np.ndarray) -> float:
    """LMD: mean Euclidean x–y distance in pixels over the 40 lip landmarks (``LIPS``).

    ``landmarks_a``, ``landmarks_b``: ``(..., 478, 2)`` or ``(..., 478, 3)`` pixel coordinates
    (z, if present, is ignored); leading dimensions such as frames are averaged over too.
    """
    landmarks_a, landmarks_b = np.asarray(landmarks_a, float), np.asarray(landmarks_b, float)
    for name, landmarks in (("landmarks_a", landmarks_a), ("landmarks_b", landmarks_b)):
        if landmarks.ndim < 2 or landmarks.shape[-2] != 478 or landmarks.shape[-1] not in (2, 3):
            raise ValueError(f"{name} must be (..., 478, 2|3), got {landmarks.shape}")
    if landmarks_a.shape[:-1] != landmarks_b.shape[:-1]:
        raise ValueError(f"landmark shapes differ: {landmarks_a.shape} vs {landmarks_b.shape}")
    lips = list(LIPS)
    offsets = landmarks_a[..., lips, :2] - landmarks_b[..., lips, :2]  # (..., 40, 2)
    return float(np.linalg.norm(offsets, axis=-1).mean())


def mouth_box_crop(crop: np.ndarray, layout: CropLayout) -> np.ndarray:
    """The mouth box (``layout.mouth_box()``) of an aligned ``(S, S, 3)`` crop → ``(h, w, 3)``."""
    crop = np.asarray(crop)
    if crop.ndim != 3 or crop.shape[:2] != (layout.size, layout.size):
        raise ValueError(f"expected an aligned crop ({layout.size}, {layout.size}, channels), got {crop.shape}")
    top, bottom, left, right = layout.mouth_box()
    return np.ascontiguousarray(crop[top:bottom, left:right])
