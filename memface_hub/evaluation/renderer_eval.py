"""Renderer evaluation on held-out frames (docs/EVALUATION.md, "Renderer and end-to-end metrics").

The renderer is driven by the ground-truth tracked mouth vertices of each test frame (its sketch
and memory query), with the frame itself as the template, so the figures measure rendering alone,
not the a2e model. Metrics are computed on the mouth box of the aligned crop: PSNR, SSIM, the
EfficientNet-Lite0 ``perceptual`` distance, the sharpness ratio, and LMD — the 40 lip landmarks of
the re-tracked output against the re-tracked ground truth, both at S = 256.

Example::

    frames = RendererFrames(test_shards, crop_size=renderer.crop_size, frame_step=10)
    truth = track_crops(frames.crops, tracker)
    metrics = evaluate_renderer(renderer, frames, renderer.speaker_memory_inputs(keys, patches),
                                PerceptualMetric(), tracker, truth)
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from ..data.renderer_frames import RendererFrames
from ..face.crop import CropLayout
from ..face.tracker import FaceTracker
from ..renderer import MemFaceRenderer
from .image_metrics import lip_landmark_distance, mouth_box_crop, psnr, sharpness_ratio, ssim
from .perceptual import PerceptualMetric

LMD_CROP_SIZE = 256


@torch.inference_mode()
def render_crops(renderer: MemFaceRenderer, frames: RendererFrames, memory: dict[str, torch.Tensor],
                 batch_size: int = 16) -> np.ndarray:
    """Render every frame of ``frames`` → ``(F, S, S, 3)`` uint8 crops."""
    renderer.eval()
    outputs = []
    for start in range(0, len(frames), batch_size):
        items = [frames[i] for i in range(start, min(start + batch_size, len(frames)))]
        batch = {key: torch.stack([item[key] for item in items]) for key in ("target", "sketch", "vertices")}
        image = renderer(batch["target"], batch["sketch"], batch["vertices"], **memory).image
        outputs.append((image.permute(0, 2, 3, 1) * 255).round().clamp(0, 255).byte().numpy())
    return np.concatenate(outputs)


def track_crops(crops: np.ndarray, tracker: FaceTracker) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks ``(F, 478, 3)`` of crops ``(F, S, S, 3)`` upscaled to S = 256, and a detected mask ``(F,)``."""
    size = LMD_CROP_SIZE
    resized = (cv2.resize(crop, (size, size), interpolation=cv2.INTER_CUBIC) if crop.shape[0] != size else crop
               for crop in crops)
    track = tracker.track(resized, total=len(crops))
    return track.landmarks, track.detected


def evaluate_renderer(renderer: MemFaceRenderer, frames: RendererFrames, memory: dict[str, torch.Tensor],
                      perceptual: PerceptualMetric, tracker: FaceTracker | None = None,
                      truth_landmarks: tuple[np.ndarray, np.ndarray] | None = None,
                      reference: RendererFrames | None = None) -> dict[str, float]:
    """Mean mouth-box metrics of ``renderer`` over ``frames``; LMD only with a ``tracker``
    (``truth_landmarks`` from :func:`track_crops` of the truth's crops saves re-tracking the truth).

    ``reference``: the same frames at another crop size (e.g. 256 for a crop-128 renderer); the outputs are
    resized to it and compared with its crops, so renderers of different sizes are measured at one resolution.
    """
    outputs = render_crops(renderer, frames, memory)
    truth = reference if reference is not None else frames
    if truth.crop_size != outputs.shape[1]:
        outputs = np.stack([cv2.resize(crop, (truth.crop_size, truth.crop_size), interpolation=cv2.INTER_CUBIC)
                            for crop in outputs])
        layout = truth.layout
    else:
        layout = CropLayout(**renderer.crop_layout)
    boxes_out = np.stack([mouth_box_crop(crop, layout) for crop in outputs])        # (F, h, w, 3)
    boxes_true = np.stack([mouth_box_crop(crop, layout) for crop in truth.crops])
    metrics = {
        "psnr_mouth": float(np.mean([psnr(a, b) for a, b in zip(boxes_out, boxes_true)])),
        "ssim_mouth": float(np.mean([ssim(a, b) for a, b in zip(boxes_out, boxes_true)])),
        "perceptual": float(np.mean(np.concatenate([perceptual.distances(boxes_out[i:i + 32], boxes_true[i:i + 32])
                                                    for i in range(0, len(boxes_out), 32)]))),
        "sharpness_ratio": float(np.mean([sharpness_ratio(a, b) for a, b in zip(boxes_out, boxes_true)])),
        "frames": int(len(outputs)),
    }
    if tracker is not None:
        truth_points, truth_found = truth_landmarks or track_crops(truth.crops, tracker)
        found, found_mask = track_crops(outputs, tracker)
        both = truth_found & found_mask
        metrics["lmd"] = lip_landmark_distance(found[both], truth_points[both]) if both.any() else float("nan")
        metrics["lmd_tracked_fraction"] = float(found_mask.mean())
    return metrics
