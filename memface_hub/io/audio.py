"""Audio I/O: any container → 16 kHz mono float32, through ffmpeg; WAV writing."""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile

from ..errors import MemFaceInputError
from .media import _check_file, ffmpeg_exe, probe

logger = logging.getLogger(__name__)

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
    warn_if_truncated(path, "audio", samples.size / sample_rate, max(info.duration, wav_declared_seconds(path)))
    return samples


def wav_declared_seconds(path: str | os.PathLike) -> float:
    """The length a RIFF/WAVE file's header declares (its ``data`` chunk size), 0.0 for other files;
    ffmpeg measures a WAV by its file size, so a cut-off WAV would otherwise look whole."""
    with open(path, "rb") as file:
        header = file.read(4096)
    if header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        return 0.0
    position, block_rate = 12, 0
    while position + 8 <= len(header):
        chunk, size = header[position:position + 4], int.from_bytes(header[position + 4:position + 8], "little")
        if chunk == b"fmt " and position + 16 <= len(header):
            block_rate = int.from_bytes(header[position + 16:position + 20], "little")   # bytes per second
        if chunk == b"data":
            return size / block_rate if block_rate and size < 0xFFFFFFF0 else 0.0
        position += 8 + size + (size & 1)
    return 0.0


TRUNCATION_TOLERANCE_SECONDS = 0.5    # streams of one file may end this far apart without a warning
TRUNCATION_TOLERANCE_FRACTION = 0.02


def warn_if_truncated(path: str | os.PathLike, kind: str, seconds_read: float, seconds_claimed: float,
                      detail: str = "") -> bool:
    """Log a warning (and return True) when a file gave much less ``kind`` than its container claims:
    a truncated download or a corrupt tail, decoded as far as it goes."""
    missing = seconds_claimed - seconds_read
    if seconds_claimed <= 0 or missing <= max(TRUNCATION_TOLERANCE_SECONDS,
                                              TRUNCATION_TOLERANCE_FRACTION * seconds_claimed):
        return False
    logger.warning("%s: truncated? read %s%.2f s of %s, the container claims %.2f s; using what was read",
                   path, detail, seconds_read, kind, seconds_claimed)
    return True


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
