"""Audio I/O: any container → 16 kHz mono float32, through ffmpeg; WAV writing."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile

from ..errors import MemFaceInputError
from .media import _check_file, ffmpeg_exe, probe

AUDIO_SAMPLE_RATE = 16_000


def load_audio(path: str | os.PathLike, sample_rate: int = AUDIO_SAMPLE_RATE,
               max_seconds: float | None = None) -> np.ndarray:
    """Decode the first audio stream of any file to mono float32 ``(samples,)`` in [-1, 1].

    ffmpeg resamples to ``sample_rate`` and downmixes. Raises :class:`MemFaceInputError`
    for a missing/unreadable file, a file with no audio stream, or zero-length audio.
    """
    path = _check_file(path)
    info = probe(path)
    if not info.has_audio:
        raise MemFaceInputError(path, "no audio stream")
    if max_seconds is not None and info.duration > max_seconds:
        raise MemFaceInputError(path, f"audio is {info.duration:.1f} s long, the limit is {max_seconds:g} s")
    command = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(path), "-vn",
               "-ac", "1", "-ar", str(int(sample_rate)), "-f", "s16le", "-acodec", "pcm_s16le", "-"]
    result = subprocess.run(command, capture_output=True)
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip().splitlines()
        raise MemFaceInputError(path, f"cannot decode audio ({message[-1] if message else 'ffmpeg failed'})")
    samples = np.frombuffer(result.stdout, np.int16).astype(np.float32) / 32768.0
    if samples.size == 0:
        raise MemFaceInputError(path, "zero-length audio")
    return samples


def write_wav(path: str | os.PathLike, samples: np.ndarray, sample_rate: int) -> Path:
    """Write mono float audio ``(samples,)`` as 16-bit PCM WAV, atomically."""
    path = Path(path)
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"audio must be mono (samples,), got shape {samples.shape}")
    handle, tmp = tempfile.mkstemp(suffix=".wav", prefix=".tmp-", dir=path.parent)
    os.close(handle)
    try:
        soundfile.write(tmp, np.clip(samples, -1.0, 1.0), int(sample_rate), subtype="PCM_16")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
