"""Renderer metrics (docs/EVALUATION.md): PSNR, SSIM, sharpness ratio, LMD, the mouth box, and the
``perceptual`` distance on the shipped ImageNet EfficientNet-Lite0 weights."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F

from memface_hub.evaluation.image_metrics import (
    lip_landmark_distance,
    mouth_box_crop,
    psnr,
    sharpness,
    sharpness_ratio,
    ssim,
)
from memface_hub.face.crop import CropLayout
from memface_hub.face.landmarks import LIPS

BLUR_SIGMAS = (1.0, 2.0, 4.0)
IMAGENET_CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module")
def metric():
    from memface_hub.evaluation.perceptual import PerceptualMetric

    return PerceptualMetric()


@pytest.fixture(scope="module")
def mouth() -> np.ndarray:
    """A real smiling mouth, the size of the default layout's mouth box: (90, 134, 3) uint8."""
    top, bottom, left, right = CropLayout().mouth_box()
    return np.ascontiguousarray(skimage.data.astronaut()[105:105 + bottom - top, 150:150 + right - left])


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0  # (1, 3, H, W)


def imagenet_input(image: np.ndarray) -> torch.Tensor:
    """Centre square, bicubic to 224: (1, 3, 224, 224) in [0, 1]."""
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = to_tensor(np.ascontiguousarray(image[top:top + side, left:left + side]))
    return F.interpolate(square, size=(224, 224), mode="bicubic", antialias=True,
                         align_corners=False).clamp(0, 1)


def test_identical_images(metric, mouth):
    assert psnr(mouth, mouth) == float("inf")
    assert ssim(mouth, mouth) == pytest.approx(1.0)
    assert sharpness_ratio(mouth, mouth) == pytest.approx(1.0)
    distances = metric.distances(mouth[None], mouth[None])
    assert distances.shape == (1,)
    assert distances[0] == pytest.approx(0.0, abs=1e-6)
    # ... while a different real image is far away
    other = np.ascontiguousarray(skimage.data.chelsea()[:mouth.shape[0], :mouth.shape[1]])
    assert metric.distances(mouth[None], other[None])[0] > 0.3


def test_blur_is_worse_the_stronger_it_is(metric, mouth):
    blurred = [blur(mouth, sigma) for sigma in BLUR_SIGMAS]
    ratios = [sharpness_ratio(image, mouth) for image in blurred]
    psnrs = [psnr(image, mouth) for image in blurred]
    ssims = [ssim(image, mouth) for image in blurred]
    distances = metric.distances(np.stack(blurred), np.stack([mouth] * len(blurred)))
    assert all(ratio < 1.0 for ratio in ratios)
    assert ratios == sorted(ratios, reverse=True)
    assert psnrs == sorted(psnrs, reverse=True) and np.isfinite(psnrs).all()
    assert ssims == sorted(ssims, reverse=True) and ssims[0] < 1.0
    assert distances[0] > 1e-3
    assert np.all(np.diff(distances) > 0), distances
    # the batch gives the same numbers as one image at a time, and tensors as arrays
    single = metric.distances(blurred[-1][None], mouth[None])
    assert single[0] == pytest.approx(distances[-1], rel=1e-4)
    as_tensors = metric.distances(torch.from_numpy(np.stack(blurred)).permute(0, 3, 1, 2),
                                  torch.from_numpy(np.stack([mouth] * 3)).permute(0, 3, 1, 2))
    np.testing.assert_allclose(as_tensors, distances, rtol=1e-5)


def test_sharpness_is_laplacian_variance():
    rng = np.random.default_rng(0)
    flat = np.full((32, 32, 3), 128, np.uint8)
    noise = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert sharpness(flat) == 0.0
    assert sharpness(noise) > 1000.0
    with pytest.raises(ValueError, match="flat"):
        sharpness_ratio(noise, flat)


def test_lip_landmark_distance_is_the_lip_shift():
    rng = np.random.default_rng(1)
    truth = rng.uniform(0, 256, (478, 3))
    output = truth.copy()
    output[list(LIPS), :2] += (3.0, 4.0)  # every lip landmark moves 5 px
    output[list(LIPS), 2] += 50.0  # depth is not part of LMD
    others = np.setdiff1d(np.arange(478), LIPS)
    output[others, :2] += 100.0  # nor are the other landmarks
    assert lip_landmark_distance(output, truth) == pytest.approx(5.0)
    assert lip_landmark_distance(output[:, :2], truth[:, :2]) == pytest.approx(5.0)
    # frames are averaged too
    assert lip_landmark_distance(np.stack([output, truth]), np.stack([truth, truth])) == pytest.approx(2.5)
    with pytest.raises(ValueError):
        lip_landmark_distance(truth[:468], truth[:468])


def test_mouth_box_crop_matches_layout():
    layout = CropLayout()
    top, bottom, left, right = layout.mouth_box()
    rows, cols = np.mgrid[:layout.size, :layout.size]
    crop = np.stack([rows, cols, np.zeros_like(rows)], -1).astype(np.uint8)  # pixel = its own position
    box = mouth_box_crop(crop, layout)
    assert box.shape == (bottom - top, right - left, 3)
    assert box[0, 0, 0] == top and box[0, 0, 1] == left
    assert box[-1, -1, 0] == bottom - 1 and box[-1, -1, 1] == right - 1
    with pytest.raises(ValueError):
        mouth_box_crop(crop[:200], layout)


def test_gradients_flow_to_the_prediction(metric, mouth):
    target = to_tensor(mouth)
    prediction = to_tensor(blur(mouth, 2.0)).requires_grad_(True)
    metric.train()  # a parent's .train() must not unfreeze BatchNorm statistics
    assert not metric.features.training
    loss = metric(prediction, target)
    assert loss.ndim == 0
    loss.backward()
    assert prediction.grad is not None and torch.isfinite(prediction.grad).all()
    assert prediction.grad.abs().max() > 0
    assert all(parameter.grad is None and not parameter.requires_grad
               for parameter in metric.parameters())
    # a small step against the gradient lowers the loss
    with torch.no_grad():
        stepped = (prediction - 0.01 * prediction.grad.sign()).clamp(0, 1)
        assert metric(stepped, target) < loss


def test_weights_are_imagenet_weights(metric):
    """The shipped checkpoint includes the classifier: it must recognise a cat and an espresso."""
    features = metric.features
    with torch.no_grad():
        cat = features.logits(imagenet_input(skimage.data.chelsea())).softmax(-1)[0]
        coffee = features.logits(imagenet_input(skimage.data.coffee())).softmax(-1)[0]
    assert int(cat.argmax()) in IMAGENET_CATS
    assert float(cat[list(IMAGENET_CATS)].sum()) > 0.5
    assert int(coffee.argmax()) == 967  # espresso


def test_feature_shapes(metric):
    features = metric.features(torch.rand(2, 3, 224, 224))
    assert [tuple(stage.shape) for stage in features] == [(2, 24, 56, 56), (2, 40, 28, 28), (2, 112, 14, 14)]
    with pytest.raises(ValueError):
        metric.distances(np.zeros((2, 16, 16, 3), np.uint8), np.zeros((2, 16, 18, 3), np.uint8))
