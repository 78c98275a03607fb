"""Audio front ends: 16 kHz mono waveform → ``(frames, feature_dim)`` features at 25 fps.

    >>> from memface_hub.audio import build_frontend
    >>> frontend = build_frontend("phonemes")                 # or "mel", "wav2vec2", "deepspeech"
    >>> features = frontend(waveform, 16_000)                 # (num_frames, 40) float32
    >>> frontend = build_frontend(frontend.config())          # configs round-trip (saved with the a2e model)

=============  ==========================================  =====================================
name           features                                    weights
=============  ==========================================  =====================================
``mel``        stacked log-mel, ``4 * n_mels``              none (librosa)
``phonemes``   pocketsphinx phone posteriorgram, 40         bundled in the pocketsphinx wheel
``phone_net``  learned phone posteriors, ``4 * 71``         bundled (trained here on TTS audio)
``wav2vec2``   Wav2Vec2/HuBERT hidden states, hidden_size   a ``transformers`` checkpoint
``deepspeech`` windowed CTC logits, ``window * vocab``      a ``Wav2Vec2ForCTC`` checkpoint
=============  ==========================================  =====================================

Only numpy is imported here; librosa, pocketsphinx, torch and transformers are imported by the
front ends that need them, when they first need them.
"""

from __future__ import annotations

import re
from typing import Any

from ..artifact_json import check_config
from ..errors import MemFaceInputError
from .base import AudioFrontEnd, cache_key, cached_features, validate_waveform
from .deepspeech import DeepSpeechFrontEnd
from .mel import MelFrontEnd
from .phone_net import PhoneNetFrontEnd
from .phonemes import PHONES, PhonemeFrontEnd
from .wav2vec2 import SPEECH_MODEL_REVISIONS, Wav2Vec2FrontEnd

FRONTENDS: dict[str, type[AudioFrontEnd]] = {
    MelFrontEnd.name: MelFrontEnd,
    PhonemeFrontEnd.name: PhonemeFrontEnd,
    PhoneNetFrontEnd.name: PhoneNetFrontEnd,
    Wav2Vec2FrontEnd.name: Wav2Vec2FrontEnd,
    DeepSpeechFrontEnd.name: DeepSpeechFrontEnd,
}


_DEVICE = re.compile(r"(cpu|cuda(:\d{1,2})?|mps)")


def _check_device(value, source, field: str) -> None:
    if not isinstance(value, str) or not _DEVICE.fullmatch(value):
        raise MemFaceInputError(source, f"field {field!r} must be cpu, cuda, cuda:N or mps, got {value!r:.40}")


def _check_speech_model(value, source, field: str) -> None:
    if value not in SPEECH_MODEL_REVISIONS:
        raise MemFaceInputError(source, f"field {field!r} must name an allowed checkpoint "
                                f"({', '.join(sorted(SPEECH_MODEL_REVISIONS))}), got {value!r:.80}")


def _check_sha256(value, source, field: str) -> None:
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise MemFaceInputError(source, f"field {field!r} must be a sha256 hex digest, got {value!r:.80}")


_SHA256 = re.compile(r"[0-9a-f]{64}")
_BOOL = ((bool,), None, None)
# What a front-end config read from an artifact (an a2e config.json, a model_index.json) may hold: the
# front ends this package allows, each field's types and range, speech checkpoints from an allowlist only
# (loaded at their pinned revision, from safetensors). A front end built in Python is not limited.
ARTIFACT_FRONTEND_FIELDS: dict[str, dict] = {
    "mel": {"n_mels": ((int,), 1, 512), "resample": _BOOL},
    "phonemes": {"resample": _BOOL, "smoothing_frames": ((int, float), 0, 25)},
    # the bundled weights only, pinned by their hash (no model_path from an artifact)
    "phone_net": {"weights_sha256": _check_sha256, "resample": _BOOL},
    "wav2vec2": {"model_name_or_path": _check_speech_model, "layer": ((int,), -64, 64), "device": _check_device,
                 "resample": _BOOL},
    "deepspeech": {"model_name_or_path": _check_speech_model, "window": ((int,), 1, 64), "device": _check_device,
                   "resample": _BOOL},
}


def check_artifact_frontend(config, source, field: str = "frontend") -> None:
    """Refuse a front-end config from an artifact that names a front end, a checkpoint or a value this
    package does not allow, naming the file and the field (``frontend.model_name_or_path`` …)."""
    if config is None:
        return
    if not isinstance(config, dict):
        raise MemFaceInputError(source, f"field {field!r} must be an object, got {type(config).__name__}")
    name = config.get("name")
    if name not in ARTIFACT_FRONTEND_FIELDS:
        raise MemFaceInputError(source, f"field '{field}.name' must be one of "
                                f"{', '.join(sorted(ARTIFACT_FRONTEND_FIELDS))}, got {name!r:.40}")
    fields = {key: value for key, value in config.items() if key != "name"}
    check_config(fields, ARTIFACT_FRONTEND_FIELDS[name], source, prefix=f"{field}.")


def build_frontend(name_or_config: str | dict[str, Any], **kwargs: Any) -> AudioFrontEnd:
    """A front end by name (``kwargs`` are its constructor arguments) or from a :meth:`config` dict
    (``kwargs`` override entries, e.g. ``device="cuda"``). An unknown name is a ``ValueError``."""
    if isinstance(name_or_config, dict):
        config = {**name_or_config, **kwargs}
        name = config.get("name")
    elif isinstance(name_or_config, str):
        config = {"name": name_or_config, **kwargs}
        name = name_or_config
    else:
        raise TypeError(f"expected a front-end name or config dict, got {type(name_or_config).__name__}")
    if name not in FRONTENDS:
        raise ValueError(f"unknown audio front end {name!r}; known front ends: {', '.join(sorted(FRONTENDS))}")
    return FRONTENDS[name].from_config(config)


__all__ = [
    "ARTIFACT_FRONTEND_FIELDS", "FRONTENDS", "PHONES", "check_artifact_frontend", "AudioFrontEnd",
    "DeepSpeechFrontEnd", "MelFrontEnd", "PhoneNetFrontEnd", "PhonemeFrontEnd",
    "Wav2Vec2FrontEnd", "build_frontend", "cache_key", "cached_features", "validate_waveform",
]
