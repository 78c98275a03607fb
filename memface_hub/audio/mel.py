"""Log-mel front end: no weights, the baseline audio feature.

librosa mel spectrogram with a 25 ms window (``n_fft=400``) and a 10 ms hop (160 samples, 100 Hz),
``log(mel + 1e-6)``, normalised per utterance to zero mean and unit variance in each mel bin; the four
100 Hz frames inside each 40 ms video frame are stacked, so ``feature_dim = 4 * n_mels``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import AudioFrontEnd, frames_per_video_frame

N_FFT = 400  # 25 ms at 16 kHz
HOP_LENGTH = 160  # 10 ms at 16 kHz → 100 Hz
FRAMES_PER_VIDEO_FRAME = 4  # 100 Hz / 25 fps
LOG_FLOOR = 1e-6
BLOCK_FRAMES = 3000  # 30 s of 10 ms frames per spectrogram block


class MelFrontEnd(AudioFrontEnd):
    """Stacked, per-utterance normalised log-mel features ``(num_frames, 4 * n_mels)``."""

    name = "mel"

    def __init__(self, n_mels: int = 80, resample: bool = False):
        super().__init__(resample=resample)
        if isinstance(n_mels, bool) or not isinstance(n_mels, int) or n_mels < 1:
            raise ValueError(f"n_mels must be a positive integer, got {n_mels!r}")
        self.n_mels = n_mels

    @property
    def feature_dim(self) -> int:
        return FRAMES_PER_VIDEO_FRAME * self.n_mels

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "n_mels": self.n_mels, "resample": self.resample}

    def _extract(self, audio: np.ndarray, num_frames: int) -> np.ndarray:
        log_mel = normalised_log_mel(audio, self.sampling_rate, self.n_mels)              # (T, n_mels)
        # stack the four 10 ms frames of each video frame
        stacked = frames_per_video_frame(log_mel, FRAMES_PER_VIDEO_FRAME, num_frames)  # (num_frames, 4, n_mels)
        return stacked.reshape(num_frames, self.feature_dim).astype(np.float32)


def normalised_log_mel(audio: np.ndarray, sampling_rate: int, n_mels: int) -> np.ndarray:
    """Log-mel at 100 Hz, normalised per utterance: ``(samples,)`` → ``(1 + samples // 160, n_mels)`` float32.

    Frame ``j`` is centred at ``j * 10 ms`` (librosa's ``center=True`` framing, computed in blocks so
    that long audio never holds a whole-utterance spectrogram); each mel bin has zero mean and unit
    variance over the utterance.
    """
    import librosa

    padded = np.pad(audio, N_FFT // 2)
    total = 1 + len(audio) // HOP_LENGTH
    log_mel = np.empty((total, n_mels), np.float32)                                       # (T, n_mels)
    for start in range(0, total, BLOCK_FRAMES):
        stop = min(start + BLOCK_FRAMES, total)
        block = padded[start * HOP_LENGTH:(stop - 1) * HOP_LENGTH + N_FFT]
        mel = librosa.feature.melspectrogram(
            y=block, sr=sampling_rate, n_fft=N_FFT, hop_length=HOP_LENGTH, win_length=N_FFT,
            n_mels=n_mels, power=2.0, center=False,
        )  # (n_mels, stop - start)
        log_mel[start:stop] = np.log(mel + LOG_FLOOR).T
    return (log_mel - log_mel.mean(axis=0)) / (log_mel.std(axis=0) + 1e-5)
