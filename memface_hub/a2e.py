"""MemFace audio-to-expression model with the implicit memory (paper Sec. 3.2, eq. 3).

audio features ``(B, T, F)`` at 25 fps → transformer encoder ``h`` → implicit memory read
``z = h + read(h)`` → transformer decoder → mouth expression coefficients ``ê (B, T, K)``.
The linear mouth model ships inside as a buffer, so callers get ``verts(ê) = neutral + B·ê``.

Ablations (docs/EVALUATION.md): ``memory="implicit"`` (MemFace), ``"none"`` and ``"explicit"``
(audio-feature keys → expression values of training frames, set with :meth:`set_explicit_memory`);
:meth:`reset_memory_` gives the "implicit memory reset to random" toy test.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .arrays_io import load_arrays
from .audio import check_artifact_frontend
from .errors import MemFaceInputError
from .face.landmarks import MOUTH_VERTICES
from .hub import StrictHubMixin
from .memory import ImplicitMemory, KeyValueMemoryRead
from .weight_delta import add_weight_delta, weight_delta

MEMORY_KINDS = ("implicit", "none", "explicit")


@dataclass
class A2EOutput:
    """expressions: ``(B, T, K)``; memory_attention: ``(B, T, M)`` or ``None`` without memory."""

    expressions: torch.Tensor
    memory_attention: torch.Tensor | None


def sinusoidal_positions(length: int, dim: int, device=None) -> torch.Tensor:
    """``(length, dim)`` sinusoidal position encoding (no maximum length)."""
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    encoding = torch.zeros(length, dim, device=device)
    encoding[:, 0::2] = torch.sin(position * frequency)
    encoding[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return encoding


class MemFaceAudioToExpression(nn.Module, StrictHubMixin, library_name="memface_hub",
                               tags=["memface", "talking-face", "audio-to-expression"],
                               repo_url="https://github.com/memface-hub/memface_hub", license="apache-2.0",
                               paper_url="https://arxiv.org/abs/2212.05005"):
    """Audio features → mouth expression coefficients, with an implicit key–value memory.

    Args mirror ``config.json``. ``feature_dim`` must match the audio front end described by
    ``frontend`` (its serialised config).
    """

    config_limits = {   # what a config.json may ask for (checked before anything is allocated)
        "feature_dim": ((int,), 1, 8192), "exp_dim": ((int,), 1, 256), "d_model": ((int,), 8, 2048),
        "num_heads": ((int,), 1, 64), "num_encoder_layers": ((int,), 1, 24), "num_decoder_layers": ((int,), 1, 24),
        "ff_dim": ((int,), 8, 8192), "dropout": ((int, float), 0.0, 0.9), "memory": ((str,), None, None),
        "memory_slots": ((int,), 2, 65536), "memory_dim": ((int,), 1, 1024),
        "memory_top_k": ((int, type(None)), 1, 65536), "num_mouth_vertices": ((int,), 1, 478),
        "frontend": check_artifact_frontend, "context_frames": ((int,), 2, 4096)}

    def __init__(self, feature_dim: int = 320, exp_dim: int = 16, d_model: int = 128, num_heads: int = 4,
                 num_encoder_layers: int = 2, num_decoder_layers: int = 2, ff_dim: int = 256,
                 dropout: float = 0.1, memory: str = "implicit", memory_slots: int = 1000, memory_dim: int = 64,
                 memory_top_k: int | None = None, num_mouth_vertices: int = len(MOUTH_VERTICES),
                 frontend: dict | None = None, context_frames: int = 64):
        super().__init__()
        if memory not in MEMORY_KINDS:
            raise ValueError(f"memory must be one of {MEMORY_KINDS}, got {memory!r}")
        if d_model % num_heads or d_model % 2:
            raise ValueError(f"d_model ({d_model}) must be even and divisible by num_heads ({num_heads})")
        if min(feature_dim, exp_dim, d_model, num_encoder_layers, num_decoder_layers) < 1:
            raise ValueError("feature_dim, exp_dim, d_model and the layer counts must be ≥ 1")
        if context_frames < 8:
            raise ValueError(f"context_frames must be ≥ 8, got {context_frames}")
        self.feature_dim, self.exp_dim, self.d_model = feature_dim, exp_dim, d_model
        self.memory_kind = memory
        self.num_mouth_vertices, self.memory_slots = int(num_mouth_vertices), int(memory_slots)
        self.frontend = dict(frontend or {})
        self.context_frames = int(context_frames)  # the training window: what predict() feeds at once

        def layer() -> nn.TransformerEncoderLayer:
            return nn.TransformerEncoderLayer(d_model, num_heads, ff_dim, dropout, batch_first=True, norm_first=True)

        self.input_proj = nn.Linear(feature_dim, d_model)
        self.encoder = nn.TransformerEncoder(layer(), num_encoder_layers, enable_nested_tensor=False)
        self.implicit_memory = ImplicitMemory(d_model, memory_slots, memory_dim, memory_top_k) \
            if memory == "implicit" else None
        if memory == "explicit":
            self.explicit_reader = KeyValueMemoryRead(d_model, feature_dim, exp_dim, memory_dim, d_model, memory_top_k)
            self.register_buffer("explicit_keys", torch.zeros(memory_slots, feature_dim))    # audio features
            self.register_buffer("explicit_values", torch.zeros(memory_slots, exp_dim))      # expressions
        else:
            self.explicit_reader = None
        self.decoder = nn.TransformerEncoder(layer(), num_decoder_layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, exp_dim)
        # The linear mouth model (docs/DESIGN.md §3): verts(e) = neutral + e @ mouth_basis.
        self.register_buffer("mouth_basis", torch.zeros(exp_dim, num_mouth_vertices * 3))

    # -- the model -------------------------------------------------------------------------------
    def forward(self, features: torch.Tensor, padding_mask: torch.Tensor | None = None) -> A2EOutput:
        """features ``(B, T, F)``; padding_mask ``(B, T)`` True at padded frames."""
        if features.shape[-1] != self.feature_dim:
            raise ValueError(f"features have dim {features.shape[-1]}, the model expects {self.feature_dim}")
        # 1. encode audio
        steps = features.shape[1]
        hidden = self.input_proj(features) + sinusoidal_positions(steps, self.d_model, features.device)  # (B, T, D)
        hidden = self.encoder(hidden, src_key_padding_mask=padding_mask)
        # 2. read the memory (eq. 3: z = h + read(h))
        attention = None
        if self.implicit_memory is not None:
            read = self.implicit_memory(hidden)
            hidden, attention = hidden + read.read, read.attention
        elif self.explicit_reader is not None:
            read = self.explicit_reader(hidden, self.explicit_keys, self.explicit_values)
            hidden, attention = hidden + read.read, read.attention
        # 3. decode expressions
        hidden = self.decoder(hidden, src_key_padding_mask=padding_mask)
        return A2EOutput(self.head(hidden), attention)                                     # (B, T, K)

    # -- mouth model -----------------------------------------------------------------------------
    def set_mouth_model(self, basis: np.ndarray | torch.Tensor) -> None:
        """Install the mouth basis ``(K, V*3)`` (a :class:`~memface_hub.face.MouthModel`'s ``basis``)."""
        basis = torch.as_tensor(np.asarray(basis), dtype=torch.float32)
        if basis.shape != self.mouth_basis.shape:
            raise ValueError(f"mouth basis {tuple(basis.shape)} does not fit the model's "
                             f"{tuple(self.mouth_basis.shape)}")
        self.mouth_basis.copy_(basis)

    def vertices(self, expressions: torch.Tensor, neutral: torch.Tensor) -> torch.Tensor:
        """``verts(ê)``: expressions ``(..., T, K)`` + neutral ``(..., V, 3)`` → ``(..., T, V, 3)``."""
        deltas = (expressions @ self.mouth_basis).unflatten(-1, (-1, 3))                 # (..., T, V, 3)
        return deltas + neutral.unsqueeze(-3)

    # -- memories --------------------------------------------------------------------------------
    def memory_parameters(self) -> list[nn.Parameter]:
        """Parameters of the memory module (updated alternately with the rest, supplement B.2)."""
        module = self.implicit_memory or self.explicit_reader
        return list(module.parameters()) if module is not None else []

    def memory_regulariser(self) -> torch.Tensor:
        """R of eq. 4 (0 without an implicit memory)."""
        if self.implicit_memory is None:
            return self.head.weight.new_zeros(())
        return self.implicit_memory.regulariser()

    @torch.no_grad()
    def set_explicit_memory(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Fill the explicit memory: keys ``(M, F)`` audio features, values ``(M, K)`` expressions."""
        if self.explicit_reader is None:
            raise ValueError("this model was not built with memory='explicit'")
        keys, values = torch.as_tensor(keys, dtype=torch.float32), torch.as_tensor(values, dtype=torch.float32)
        if keys.shape != self.explicit_keys.shape or values.shape != self.explicit_values.shape:
            raise ValueError(f"explicit memory must be {tuple(self.explicit_keys.shape)} → "
                             f"{tuple(self.explicit_values.shape)}, got {tuple(keys.shape)} → {tuple(values.shape)}")
        self.explicit_keys.copy_(keys)
        self.explicit_values.copy_(values)

    @torch.no_grad()
    def reset_memory_(self, seed: int = 0) -> None:
        """Reset the implicit memory's keys and values to normal random values (Fig. 9 toy test)."""
        if self.implicit_memory is None:
            raise ValueError("reset_memory_ needs memory='implicit'")
        self.implicit_memory.reset_(torch.Generator().manual_seed(seed))

    # -- inference -------------------------------------------------------------------------------
    @torch.inference_mode()
    def predict(self, features: torch.Tensor | np.ndarray, window: int | None = None,
                overlap: int | None = None) -> torch.Tensor:
        """Expressions ``(T, K)`` for features ``(T, F)`` of any length: overlapping windows, cross-faded.

        Windows default to ``context_frames``, the length the model was trained on (longer windows
        give attention contexts it never saw: test RMSE 0.0095 at 200 frames vs 0.0085 at 64);
        ``overlap`` defaults to a quarter of the window.
        """
        window = int(window or self.context_frames)
        overlap = int(overlap if overlap is not None else window // 4)
        if not 0 <= overlap < window:
            raise ValueError(f"overlap must be in [0, window={window}), got {overlap}")
        features = torch.as_tensor(np.asarray(features), dtype=torch.float32, device=self.mouth_basis.device)
        steps = features.shape[0]
        if steps <= window:
            return self(features[None]).expressions[0]
        stride = window - overlap
        output = torch.zeros(steps, self.exp_dim, device=features.device)
        weight = torch.zeros(steps, 1, device=features.device)
        ramp = torch.ones(window, 1, device=features.device)
        if overlap:
            ramp[:overlap, 0] = torch.linspace(0.05, 1.0, overlap)
            ramp[-overlap:, 0] = torch.linspace(1.0, 0.05, overlap)
        start = 0
        while True:
            start = min(start, steps - window)
            chunk = self(features[None, start:start + window]).expressions[0]
            output[start:start + window] += chunk * ramp
            weight[start:start + window] += ramp
            if start + window >= steps:
                break
            start += stride
        return output / weight


# -- a speaker's adapted a2e model, stored as a weight delta beside its memory ------------------------
A2E_DELTA_FILE = "a2e_delta.safetensors"      # optional, in a speaker folder (training/adapt_a2e.py writes it)
A2E_DELTA_FORMAT = "memface-a2e-delta"
A2E_ADAPTED_MODULES = ("implicit_memory", "decoder", "head")   # what adaptation may change (after the encoder)
MAX_A2E_DELTA_BYTES = 64 << 20


def a2e_fingerprint(model: MemFaceAudioToExpression) -> str:
    """SHA-256 (hex, first 16 digits) of every tensor of ``model``'s state, names included: which base
    model a delta was made against."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def a2e_delta(base: MemFaceAudioToExpression, tuned: MemFaceAudioToExpression) -> dict[str, np.ndarray]:
    """Float16 differences of the :data:`A2E_ADAPTED_MODULES` tensors that changed (empty: none did)."""
    return weight_delta(base, tuned, A2E_ADAPTED_MODULES)


def a2e_delta_metadata(base: MemFaceAudioToExpression) -> dict[str, str]:
    """What :func:`apply_a2e_delta` checks in the file's safetensors header."""
    return {"format": A2E_DELTA_FORMAT, "version": "1", "base_a2e": a2e_fingerprint(base)}


@torch.no_grad()
def apply_a2e_delta(model: MemFaceAudioToExpression, path: str | os.PathLike) -> MemFaceAudioToExpression:
    """Add a stored a2e delta to ``model`` in place.

    Refused with a :class:`MemFaceInputError` naming the file (one line): not a safetensors file, larger
    than :data:`MAX_A2E_DELTA_BYTES`, another format, made against another base model (its ``base_a2e``
    fingerprint), no tensors, a name outside :data:`A2E_ADAPTED_MODULES` or not in the model, a shape
    other than the tensor's, not float16, or non-finite values.
    """
    from safetensors import safe_open

    delta = load_arrays(path, max_bytes=MAX_A2E_DELTA_BYTES)           # exists, size, valid safetensors
    with safe_open(str(path), framework="np") as file:
        metadata = file.metadata() or {}
    if metadata.get("format") != A2E_DELTA_FORMAT or metadata.get("version") != "1":
        raise MemFaceInputError(path, f"not a {A2E_DELTA_FORMAT} version 1 file (header says "
                                f"{metadata.get('format')!r} version {metadata.get('version')!r})")
    if metadata.get("base_a2e") != a2e_fingerprint(model):
        raise MemFaceInputError(path, f"made for another a2e model (base {metadata.get('base_a2e')!r}, this one is "
                                f"{a2e_fingerprint(model)!r}); adapt the speaker again with this pipeline's a2e")
    if not delta:
        raise MemFaceInputError(path, "holds no tensors")
    return add_weight_delta(model, delta, path, A2E_ADAPTED_MODULES)
