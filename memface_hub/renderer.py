"""MemFace neural renderer with the explicit per-speaker memory (paper Sec. 3.3, eq. 5).

A U-Net on the S×S aligned crop. Input ``x``: the template crop with the mouth box masked out,
the drawn projected mouth (the "3D face image"), and the mask. The explicit memory is read with
the predicted mouth vertices as the query (keys: the speaker's mouth vertices; values: their
mouth patches, encoded by a small CNN that plays ``W_v``); the attention-weighted patch features
are placed at the mouth box of the bottleneck and concatenated with the encoder features:
``ŷ = Dec(Enc(x) ⊕ read(verts(ê)))``. The output is composited so only the mouth box changes.

Identity comes from the inputs, not from the weights (``colour_normalise=True``, the default):
trained on many people, a renderer must not paint the skin it saw most. So

* the template is normalised by the mean (per channel) and standard deviation (one for all
  channels, so no hue shift) of its own skin in the upper half of a ring around the mouth box, and
  the network predicts the mouth box **in those units**: ``raw = μ_ring + σ_ring · Dec(...)`` —
  skin tone and light are the template's;
* the memory patches are normalised by the speaker memory's own statistics before ``W_v``, so
  lips, teeth and mouth shapes are read as the speaker's relative appearance;
* at generation, the prediction's mean colour in the feathered band where it meets the template
  frame is matched to the frame's (a per-image offset, ``match_seam``), so no box or seam shows.

Real time at crop 256 (``mouth_window=True``): only the mouth box changes, so the network runs on
a window of the crop around it (the box grown by the colour ring and the feather, in multiples of
2^depth — 136×192 of 256×256), and the rest of the crop is the template's.

Sharp retrieval (``memory_distance_prior=p``, with ``memory_top_k``): the learned attention of eq. 2
alone drifts to near-uniform weights, because an average of all patches is the L1-optimal guess,
and the retrieved mouth image is then the blur of an average. The prior adds ``-p · d² / median(d²)``
(``d``: distance of the query's mouth vertices to each key) to the logits, so the entries of the
speaker's nearest mouth shapes are read and the decoder gets a real, sharp mouth of that person.

Ablations (docs/EVALUATION.md): ``memory="explicit"`` (MemFace), ``"none"``, ``"implicit"`` (learned
slots of the same count, read by the same query).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .arrays_io import load_arrays
from .explicit_memory import EncodedMemory
from .face.crop import CropLayout, feathered_mask
from .face.landmarks import MOUTH_VERTICES
from .hub import StrictHubMixin
from .memory import ImplicitMemory, KeyValueMemoryRead
from .weight_delta import add_weight_delta, weight_delta

RENDERER_MEMORY_KINDS = ("explicit", "none", "implicit")


MIN_STD = 0.02          # floor of the colour statistics' standard deviation (flat, saturated regions)


def colour_statistics(images: torch.Tensor, weights: torch.Tensor, dims=(2, 3)) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted per-channel mean and one standard deviation shared by the channels (the root of the
    mean channel variance, so that normalising never shifts hue) of ``images (B, 3, H, W)`` over
    ``dims``, with ``weights`` broadcastable to them → ``(mean, std)``, keeping the reduced dims as 1."""
    total = (weights.expand_as(images) if weights.shape != images.shape else weights).sum(dims, keepdim=True)
    mean = (images * weights).sum(dims, keepdim=True) / total.clamp_min(1e-6)
    variance = (((images - mean) ** 2) * weights).sum(dims, keepdim=True) / total.clamp_min(1e-6)
    return mean, variance.mean(dim=1, keepdim=True).clamp_min(0).sqrt().clamp_min(MIN_STD)


@dataclass
class RendererOutput:
    """image: ``(B, 3, S, S)`` composited output in [0, 1]; raw: the network's full-crop
    prediction; memory_attention: ``(B, M)`` or ``None``."""

    image: torch.Tensor
    raw: torch.Tensor
    memory_attention: torch.Tensor | None


def conv_block(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """3×3 conv (optionally strided) → GroupNorm → SiLU, twice."""
    groups = math.gcd(8, out_channels)
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride, 1), nn.GroupNorm(groups, out_channels), nn.SiLU(),
        nn.Conv2d(out_channels, out_channels, 3, 1, 1), nn.GroupNorm(groups, out_channels), nn.SiLU())


class PatchEncoder(nn.Module):
    """``W_v`` of the explicit memory: mouth patches ``(N, 3, h, w)`` in [0, 1] → ``(N, C, hb, wb)``
    feature maps at the bottleneck's resolution of the mouth box."""

    def __init__(self, out_channels: int, depth: int, box_size: tuple[int, int]):
        super().__init__()
        layers, channels = [], 3
        for level in range(depth):
            width = min(out_channels, 16 * 2 ** level)
            layers.append(conv_block(channels, width, stride=2))
            channels = width
        layers.append(nn.Conv2d(channels, out_channels, 1))
        self.net = nn.Sequential(*layers)
        self.box_size = box_size

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.net(patches), size=self.box_size, mode="bilinear", align_corners=False)


class MemFaceRenderer(nn.Module, StrictHubMixin, library_name="memface_hub",
                      tags=["memface", "talking-face", "neural-renderer"],
                      repo_url="https://github.com/memface-hub/memface_hub", license="apache-2.0",
                      paper_url="https://arxiv.org/abs/2212.05005"):
    """Template crop + projected mouth (+ the speaker's explicit memory) → rendered crop."""

    config_limits = {   # what a config.json may ask for (checked before anything is allocated)
        "crop_size": ((int,), 32, 1024), "base_channels": ((int,), 2, 256), "depth": ((int,), 1, 6),
        "memory": ((str,), None, None), "memory_dim": ((int,), 1, 1024), "value_channels": ((int,), 1, 512),
        "implicit_slots": ((int,), 2, 65536), "memory_top_k": ((int, type(None)), 1, 65536),
        "feather": ((int,), 0, 64), "num_mouth_vertices": ((int,), 1, 478),
        "crop_layout": ((dict, type(None)), None, None), "colour_normalise": ((bool,), None, None),
        "ring_width": ((int, float), 0.001, 0.49), "memory_image": ((bool,), None, None),
        "mouth_window": ((bool,), None, None), "memory_distance_prior": ((int, float), 0.0, 1000.0)}

    def __init__(self, crop_size: int = 256, base_channels: int = 32, depth: int = 4, memory: str = "explicit",
                 memory_dim: int = 64, value_channels: int = 64, implicit_slots: int = 300,
                 memory_top_k: int | None = None, feather: int = 6,
                 num_mouth_vertices: int = len(MOUTH_VERTICES), crop_layout: dict | None = None,
                 colour_normalise: bool = True, ring_width: float = 0.08, memory_image: bool = True,
                 mouth_window: bool = False, memory_distance_prior: float = 0.0):
        super().__init__()
        if memory not in RENDERER_MEMORY_KINDS:
            raise ValueError(f"memory must be one of {RENDERER_MEMORY_KINDS}, got {memory!r}")
        layout = CropLayout(**{**(crop_layout or {}), "size": crop_size})
        if crop_size % (2 ** depth):
            raise ValueError(f"crop_size {crop_size} must be divisible by 2**depth = {2 ** depth}")
        self.crop_size, self.depth, self.memory_kind = crop_size, depth, memory
        if not 0.0 <= memory_distance_prior <= 1000.0:
            raise ValueError(f"memory_distance_prior must be in [0, 1000], got {memory_distance_prior}")
        self.memory_distance_prior = float(memory_distance_prior)
        self.num_mouth_vertices = int(num_mouth_vertices)
        self.crop_layout = {k: v for k, v in layout.__dict__.items()}
        top, bottom, left, right = layout.mouth_box()
        self.patch_box = (top, bottom, left, right)                              # in crop pixels
        scale = 2 ** depth
        if not 0 < ring_width < 0.5:
            raise ValueError(f"ring_width must be in (0, 0.5), got {ring_width}")
        ring = max(2, round(ring_width * crop_size))
        # The network's window (top, bottom, left, right) of the crop: all of it, or with
        # ``mouth_window`` only the mouth box grown by the colour ring, the feather and a margin of
        # context, in multiples of 2^depth: the FLOPs go where pixels change.
        self.mouth_window = bool(mouth_window)
        if self.mouth_window:        # the ring (upper half) above and beside the box, the feather below it
            down = lambda value, margin: max(0, (value - margin) // scale * scale)                # noqa: E731
            up = lambda value, margin: min(crop_size, -(-(value + margin) // scale) * scale)      # noqa: E731
            side = ring + feather
            self.window = (down(top, side), up(bottom, feather), down(left, side), up(right, side))
        else:
            self.window = (0, crop_size, 0, crop_size)
        wt, _, wl, _ = self.window
        top, bottom, left, right = self.net_box = (top - wt, bottom - wt, left - wl, right - wl)   # in window pixels
        self.bottleneck_box = (top // scale, -(-bottom // scale), left // scale, -(-right // scale))
        box_size = (self.bottleneck_box[1] - self.bottleneck_box[0], self.bottleneck_box[3] - self.bottleneck_box[2])
        # Compositing weights (feathered), and the hard mask that hides every pixel with any weight
        # from the network's input, so it cannot copy the template's mouth.
        self.register_buffer("mouth_mask", torch.from_numpy(
            feathered_mask(crop_size, self.patch_box, feather))[None, None], persistent=False)
        self.register_buffer("input_mask", (self.mouth_mask > 1e-4).float(), persistent=False)
        # Colour references (colour_normalise): the visible skin in a ring of ``ring_width`` · S
        # around the hidden region — its upper half only (cheeks and the skin under the nose; the lower
        # half crosses neck, collar and background) — and the feathered band where output and template meet.
        self.colour_normalise, self.ring_width = bool(colour_normalise), float(ring_width)
        hidden = self.input_mask[0, 0].numpy().astype(np.uint8)
        grown = cv2.dilate(hidden, np.ones((2 * ring + 1, 2 * ring + 1), np.uint8))
        grown[(self.patch_box[0] + self.patch_box[1]) // 2:] = 0
        self.register_buffer("ring_mask", torch.from_numpy((grown.astype(np.float32) - hidden).clip(0, 1))[None, None],
                             persistent=False)
        band = self.mouth_mask * (1 - self.mouth_mask) * 4                       # peaks at weight 0.5
        self.register_buffer("seam_band", band, persistent=False)

        # encoder (7 input channels: masked template, sketch, mask; + 3 with the retrieved mouth image)
        self.memory_image = bool(memory_image) and memory == "explicit"
        widths = [base_channels * 2 ** min(level, 3) for level in range(depth + 1)]
        self.stem = conv_block(10 if self.memory_image else 7, widths[0])
        self.down = nn.ModuleList(conv_block(widths[i], widths[i + 1], stride=2) for i in range(depth))
        # memory (eq. 5)
        query_dim = num_mouth_vertices * 3
        self.value_channels = value_channels
        self.box_size = box_size
        if memory == "explicit":
            self.patch_encoder = PatchEncoder(value_channels, depth, box_size)
            self.reader = KeyValueMemoryRead(query_dim, query_dim, None, memory_dim, None, memory_top_k)
        elif memory == "implicit":
            self.implicit_memory = ImplicitMemory(query_dim, implicit_slots, memory_dim, memory_top_k,
                                                  output_dim=value_channels * box_size[0] * box_size[1])
        fused = widths[-1] + (value_channels if memory != "none" else 0)
        self.fuse = conv_block(fused, widths[-1])
        # decoder with skip connections
        self.up = nn.ModuleList(conv_block(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(depth)))
        self.out = nn.Conv2d(widths[0], 3, 1)

    # -- inputs ----------------------------------------------------------------------------------
    def masked_input(self, template: torch.Tensor, sketch: torch.Tensor,
                     retrieved: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, 7, S, S)``: template with the mouth box removed, the sketch, the mask; ``(B, 10, S, S)``
        with ``memory_image``: plus the retrieved mouth ``(B, 3, h, w)`` placed in the mouth box."""
        mask = self.windowed(self.input_mask).expand(template.shape[0], 1, -1, -1)
        parts = [template * (1 - mask), sketch, mask]
        if self.memory_image:
            canvas = template.new_zeros(template.shape)
            if retrieved is not None:
                top, bottom, left, right = self.net_box
                canvas[:, :, top:bottom, left:right] = retrieved
            parts.append(canvas)
        return torch.cat(parts, dim=1)

    def windowed(self, images: torch.Tensor) -> torch.Tensor:
        """``(..., S, S)`` → the network's window ``(..., h, w)`` of them (all of it without ``mouth_window``)."""
        top, bottom, left, right = self.window
        return images[..., top:bottom, left:right]

    def ring_statistics(self, template: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std ``(B, 3, 1, 1)`` of the template's skin (``(B, 3, S, S)``) in the ring around the mouth box."""
        return colour_statistics(template, self.ring_mask.to(template.dtype))

    def normalise_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """Speaker patches ``(N, 3, h, w)`` in [0, 1] → the same in the memory's own colour units (with
        ``colour_normalise``: minus the memory's per-channel mean, over its standard deviation)."""
        if not self.colour_normalise:
            return patches
        mean, std = colour_statistics(patches, patches.new_ones(()), dims=(0, 2, 3))
        return (patches - mean) / std

    def encode_memory(self, patches: torch.Tensor) -> torch.Tensor:
        """Speaker patches ``(N, 3, h, w)`` in [0, 1] → memory values ``(N, C, hb, wb)`` (cache per speaker)."""
        if self.memory_kind != "explicit":
            raise ValueError("encode_memory needs memory='explicit'")
        return self.patch_encoder(self.normalise_patches(patches))

    def encode(self, keys: torch.Tensor, patches: torch.Tensor) -> EncodedMemory:
        """A speaker's keys ``(N, V, 3)`` and patches ``(N, 3, h, w)`` in [0, 1] → the
        :class:`~memface_hub.explicit_memory.EncodedMemory` :meth:`forward` reads (encoded here, so
        gradients reach ``W_v``)."""
        if self.memory_kind != "explicit":
            raise ValueError("encode needs memory='explicit'")
        return EncodedMemory(keys, self.encode_memory(patches),
                             self.normalise_patches(patches) if self.memory_image else None)

    def memory_inputs(self, keys: torch.Tensor, patches: torch.Tensor,
                      exclude: torch.Tensor | None = None) -> dict:
        """Keyword arguments for :meth:`forward` (``memory``, ``exclude``) from a speaker's keys and
        patches (:meth:`encode`); empty without an explicit memory."""
        if self.memory_kind != "explicit":
            return {}
        return {"memory": self.encode(keys, patches), "exclude": exclude}

    @torch.no_grad()
    def speaker_memory_inputs(self, keys: np.ndarray | torch.Tensor, values: np.ndarray | torch.Tensor
                              ) -> dict[str, torch.Tensor]:
        """Inference: a speaker's keys ``(N, V, 3)`` float and patches ``(N, 3, h, w)`` uint8 (any
        crop size: resized to this renderer's mouth box) → :meth:`forward` keyword arguments with the
        values encoded once, to reuse for every frame; empty without an explicit memory."""
        if self.memory_kind != "explicit":
            return {}
        device, dtype = self.out.weight.device, self.out.weight.dtype
        keys = torch.as_tensor(np.asarray(keys, np.float32)).to(device, dtype)
        patches = torch.as_tensor(np.asarray(values)).to(device).float() / 255.0           # (N, 3, h, w)
        top, bottom, left, right = self.patch_box
        if patches.shape[-2:] != (bottom - top, right - left):
            patches = F.interpolate(patches, size=(bottom - top, right - left), mode="bilinear",
                                    align_corners=False, antialias=True)
        return {"memory": self.encode(keys, patches.to(dtype))}

    # -- the model -------------------------------------------------------------------------------
    def forward(self, template: torch.Tensor, sketch: torch.Tensor, vertices: torch.Tensor,
                memory: EncodedMemory | None = None, exclude: torch.Tensor | None = None,
                match_seam: bool = False) -> RendererOutput:
        """template, sketch ``(B, 3, S, S)`` in [0, 1]; vertices ``(B, V, 3)`` predicted mouth
        vertices (the query); ``memory``: the speaker's explicit memory from :meth:`encode` (keys,
        values through ``W_v`` and, with ``memory_image``, the patches: the attention-weighted patch
        is given to the encoder at full resolution, so the mouth's detail need not pass the
        bottleneck); exclude ``(B, N)`` entries a frame must not read (its own frame ±2 during
        training: the leakage rule, :func:`memface_hub.explicit_memory.leakage_mask`);
        :meth:`memory_inputs` / :meth:`speaker_memory_inputs` make both as keyword arguments. ``match_seam`` (for
        generation, where the template is another frame, never in training, where it is the target)
        shifts the output's mean colour to the template's in the band where they are blended."""
        # 1. read the memory with the predicted vertices (the query needs nothing else)
        attention, retrieved = None, None
        query = vertices.flatten(1)[:, None]                                      # (B, 1, V*3)
        if self.memory_kind == "explicit":
            if memory is None:
                raise ValueError("the explicit-memory renderer needs a memory: pass renderer.encode(keys, patches)")
            if self.memory_image and memory.patches is None:
                raise ValueError("this renderer reads the memory's patches too: make the memory with renderer.encode")
            memory_patches = memory.patches
            read = self.reader(query, memory.keys.flatten(1), memory.values,
                               None if exclude is None else exclude[:, None],
                               self.distance_prior(query, memory.keys.flatten(1)))
            patch_features, attention = read.read[:, 0], read.attention[:, 0]    # (B, C, hb, wb), (B, N)
            if self.memory_image:                                                  # (B, 3, h, w)
                retrieved = (attention.to(memory_patches.dtype) @ memory_patches.flatten(1)).view(
                    -1, *memory_patches.shape[1:])
        elif self.memory_kind == "implicit":
            read = self.implicit_memory(query)
            patch_features = read.read[:, 0].unflatten(-1, (self.value_channels, *self.box_size))
            attention = read.attention[:, 0]
        # 2. encode the masked template (in its ring's colour units), the projected mouth, the retrieved
        #    one — in the network's window of the crop
        window, sketch = self.windowed(template), self.windowed(sketch)            # (B, 3, h, w)
        if self.colour_normalise:
            ring_mean, ring_std = self.ring_statistics(template)                 # (B, 3, 1, 1), (B, 1, 1, 1)
            features = [self.stem(self.masked_input((window - ring_mean) / ring_std, sketch, retrieved))]
        else:
            features = [self.stem(self.masked_input(window, sketch, retrieved))]
        for block in self.down:
            features.append(block(features[-1]))
        bottleneck = features.pop()                                               # (B, C_b, S/2^d, S/2^d)
        # 3. place the memory read at the mouth box of the bottleneck: Enc(x) ⊕ read(verts)
        if self.memory_kind != "none":
            canvas = bottleneck.new_zeros(bottleneck.shape[0], self.value_channels, *bottleneck.shape[2:])
            top, bottom, left, right = self.bottleneck_box
            canvas[:, :, top:bottom, left:right] = patch_features
            bottleneck = torch.cat([bottleneck, canvas], dim=1)
        hidden = self.fuse(bottleneck)
        # 4. decode with skip connections
        for block in self.up:
            skip = features.pop()
            hidden = F.interpolate(hidden, size=skip.shape[2:], mode="bilinear", align_corners=False)
            hidden = block(torch.cat([hidden, skip], dim=1))
        if self.colour_normalise:
            raw = ring_mean + ring_std * self.out(hidden)                            # (B, 3, h, w)
        else:
            raw = torch.sigmoid(self.out(hidden))
        if self.mouth_window:                                          # the rest of the crop is the template's
            top, bottom, left, right = self.window
            raw = F.pad(raw, (left, self.crop_size - right, top, self.crop_size - bottom))
            outside = F.pad(torch.zeros_like(raw[:, :1, top:bottom, left:right]),
                            (left, self.crop_size - right, top, self.crop_size - bottom), value=1.0)
            raw = raw + template * outside                                       # (B, 3, S, S)
        # 5. at generation: match the mean colour where output and template meet (no seam)
        if match_seam:
            band = self.seam_band.to(raw.dtype)
            raw = raw + ((template - raw) * band).sum((2, 3), keepdim=True) / band.sum().clamp_min(1e-6)
        raw = raw.clamp(0, 1)
        # 6. composite: only the mouth box changes
        mask = self.mouth_mask
        return RendererOutput(template * (1 - mask) + raw * mask, raw, attention)

    def distance_prior(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor | None:
        """Attention logits ``-p · d² / median(d²)`` ``(B, 1, N)`` of the query ``(B, 1, V·3)`` to each
        key ``(N, V·3)`` (``p = memory_distance_prior``; ``None`` when 0, the paper's learned attention
        alone): entries whose mouth shape is near the query are read, so the retrieved patch is a real
        mouth of the speaker, not the blur of an average."""
        if not self.memory_distance_prior:
            return None
        distance = torch.cdist(query.float(), keys.float()[None].expand(query.shape[0], -1, -1)) ** 2   # (B, 1, N)
        scale = distance.median(dim=-1, keepdim=True).values.clamp_min(1e-12)
        return (-self.memory_distance_prior * distance / scale).to(query.dtype)

    def memory_regulariser(self) -> torch.Tensor:
        if self.memory_kind == "implicit":
            return self.implicit_memory.regulariser()
        return self.out.weight.new_zeros(())


# -- a speaker's fine-tuned renderer, stored as a weight delta beside its memory ---------------------
def renderer_delta(base: MemFaceRenderer, tuned: MemFaceRenderer) -> dict[str, np.ndarray]:
    """Float16 differences of every floating-point tensor that changed."""
    return weight_delta(base, tuned)


def apply_renderer_delta(renderer: MemFaceRenderer, path: str | os.PathLike) -> MemFaceRenderer:
    """Add a stored delta to ``renderer`` in place; unknown names, other shapes or dtypes and non-finite
    values are refused, naming them, before anything is added."""
    return add_weight_delta(renderer, load_arrays(path), path)


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator on mouth boxes ``(B, 3, h, w)`` → ``(B, 1, h/8, w/8)`` logits (the GAN term of eq. 6)."""

    def __init__(self, channels: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, channels, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(channels, channels * 2, 4, 2, 1), nn.GroupNorm(8, channels * 2), nn.LeakyReLU(0.2),
            nn.Conv2d(channels * 2, channels * 4, 4, 2, 1), nn.GroupNorm(8, channels * 4), nn.LeakyReLU(0.2),
            nn.Conv2d(channels * 4, 1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images * 2 - 1)
