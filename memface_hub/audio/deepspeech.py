"""DeepSpeech-style front end: windows of character logits from a CTC speech recogniser.

AD-NeRF and DFRF drive their models with DeepSpeech's per-character logits (50 Hz) in windows of 16
steps (0.32 s) around each video frame. DeepSpeech itself is not in ``transformers``; a
``Wav2Vec2ForCTC`` head gives the same kind of feature (logits over V characters at 50 Hz).
For video frame ``i`` (centred at ``(i + 0.5) / 25`` s, the boundary between logit steps ``2i`` and
``2i + 1``) the window holds steps ``2i + 1 - window // 2 + [0, window)``, edge-padded at both ends,
flattened → ``(num_frames, window * V)``. ``feature_dim`` reads only the model's config.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from .base import AudioFrontEnd
from .wav2vec2 import load_speech_config

logger = logging.getLogger(__name__)

STEPS_PER_VIDEO_FRAME = 2  # 50 Hz logit steps / 25 fps


class DeepSpeechFrontEnd(AudioFrontEnd):
    """Windowed CTC character logits ``(num_frames, window * vocab_size)`` at 25 fps."""

    name = "deepspeech"

    def __init__(self, model_name_or_path: str = "facebook/wav2vec2-base-960h", window: int = 16,
                 device: str = "cpu", resample: bool = False):
        super().__init__(resample=resample)
        if not isinstance(model_name_or_path, str) or not model_name_or_path:
            raise ValueError(f"model_name_or_path must be a non-empty string, got {model_name_or_path!r}")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be a positive integer, got {window!r}")
        self.model_name_or_path = model_name_or_path
        self.window = window
        self.device = str(device)
        self._model_config = None
        self._feature_extractor = None
        self._model = None
        self._lock = threading.Lock()

    @property
    def vocab_size(self) -> int:
        """Number of CTC output classes V (from the model's config; no weights are loaded)."""
        if self._model_config is None:
            self._model_config = load_speech_config(self.model_name_or_path)
        return int(self._model_config.vocab_size)

    @property
    def feature_dim(self) -> int:
        return self.window * self.vocab_size

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "model_name_or_path": self.model_name_or_path, "window": self.window,
                "device": self.device, "resample": self.resample}

    def _load(self):
        """Feature extractor and frozen eval-mode CTC model (call with ``self._lock`` held)."""
        if self._model is None:
            import torch
            from transformers import AutoFeatureExtractor, Wav2Vec2ForCTC

            logger.info("loading %s for the %s front end", self.model_name_or_path, self.name)
            self._feature_extractor = AutoFeatureExtractor.from_pretrained(self.model_name_or_path)
            model = Wav2Vec2ForCTC.from_pretrained(self.model_name_or_path)
            model.requires_grad_(False)
            self._model = model.eval().to(torch.device(self.device))
        return self._feature_extractor, self._model

    def logits(self, audio: np.ndarray) -> np.ndarray:
        """CTC logits for 16 kHz float audio ``(samples,)`` → ``(steps, vocab_size)`` at 50 Hz."""
        import torch

        with self._lock:
            feature_extractor, model = self._load()
        inputs = feature_extractor(audio, sampling_rate=self.sampling_rate, return_tensors="pt")
        inputs = {key: value.to(model.device) for key, value in inputs.items()}
        with torch.inference_mode():
            logits = model(**inputs).logits  # (1, steps, V)
        return logits[0].float().cpu().numpy()

    def _extract(self, audio: np.ndarray, num_frames: int) -> np.ndarray:
        logits = self.logits(audio)  # (steps, V)
        starts = STEPS_PER_VIDEO_FRAME * np.arange(num_frames) + 1 - self.window // 2  # (num_frames,)
        index = np.clip(starts[:, None] + np.arange(self.window)[None, :], 0, len(logits) - 1)
        windows = logits[index]  # (num_frames, window, V)
        return windows.reshape(num_frames, self.feature_dim).astype(np.float32)
