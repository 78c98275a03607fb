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
``wav2vec2``   Wav2Vec2/HuBERT hidden states, hidden_size   a ``transformers`` checkpoint
``deepspeech`` windowed CTC logits, ``window * vocab``      a ``Wav2Vec2ForCTC`` checkpoint
=============  ==========================================  =====================================

Only numpy is imported here; librosa, pocketsphinx, torch and transformers are imported by the
front ends that need them, when they first need them.
"""

from __future__ import annotations

from typing import Any

from .base import AudioFrontEnd, cache_key, cached_features, validate_waveform
from .deepspeech import DeepSpeechFrontEnd
from .mel import MelFrontEnd
from .phonemes import PHONES, PhonemeFrontEnd
from .wav2vec2 import Wav2Vec2FrontEnd

FRONTENDS: dict[str, type[AudioFrontEnd]] = {
    MelFrontEnd.name: MelFrontEnd,
    PhonemeFrontEnd.name: PhonemeFrontEnd,
    Wav2Vec2FrontEnd.name: Wav2Vec2FrontEnd,
    DeepSpeechFrontEnd.name: DeepSpeechFrontEnd,
}


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
    "FRONTENDS", "PHONES", "AudioFrontEnd", "DeepSpeechFrontEnd", "MelFrontEnd", "PhonemeFrontEnd",
    "Wav2Vec2FrontEnd", "build_frontend", "cache_key", "cached_features", "validate_waveform",
]
