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
from typing import Any

import numpy as np

from .base import AudioFrontEnd
from .wav2vec2 import WAV2VEC2_MODEL, SpeechEncoder

logger = logging.getLogger(__name__)

STEPS_PER_VIDEO_FRAME = 2  # 50 Hz logit steps / 25 fps


class DeepSpeechFrontEnd(AudioFrontEnd):
    """Windowed CTC character logits ``(num_frames, window * vocab_size)`` at 25 fps."""

    name = "deepspeech"

    def __init__(self, model_name_or_path: str = WAV2VEC2_MODEL, window: int = 16,
                 device: str = "cpu", resample: bool = False):
        super().__init__(resample=resample)
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be a positive integer, got {window!r}")
        self.encoder = SpeechEncoder(model_name_or_path, device, head="ctc")
        self.model_name_or_path = model_name_or_path
        self.window = window
        self.device = str(device)

    @property
    def vocab_size(self) -> int:
        """Number of CTC output classes V (from the model's config; no weights are loaded)."""
        return int(self.encoder.config.vocab_size)

    @property
    def feature_dim(self) -> int:
        return self.window * self.vocab_size

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "model_name_or_path": self.model_name_or_path, "window": self.window,
                "device": self.device, "resample": self.resample}

    def logits(self, audio: np.ndarray) -> np.ndarray:
        """CTC logits for 16 kHz float audio ``(samples,)`` → ``(steps, vocab_size)`` at 50 Hz."""
        return self.encoder(audio, self.sampling_rate).logits[0].float().cpu().numpy()

    def _extract(self, audio: np.ndarray, num_frames: int) -> np.ndarray:
        logits = self.logits(audio)  # (steps, V)
        starts = STEPS_PER_VIDEO_FRAME * np.arange(num_frames) + 1 - self.window // 2  # (num_frames,)
        index = np.clip(starts[:, None] + np.arange(self.window)[None, :], 0, len(logits) - 1)
        windows = logits[index]  # (num_frames, window, V)
        return windows.reshape(num_frames, self.feature_dim).astype(np.float32)
