"""The audio front-end interface: 16 kHz mono waveform → ``(frames, feature_dim)`` at 25 fps.

Every front end (``mel``, ``phonemes``, ``wav2vec2``, ``deepspeech``) is a plain, serialisable
preprocessing object (like ``transformers``' feature extractors): its constructor arguments are its
config, it checks the sampling rate and says what it expected, and it returns one feature row per
video frame. Frame ``i`` covers the time ``[i / 25, (i + 1) / 25)`` seconds.

    >>> frontend = MelFrontEnd()
    >>> features = frontend(waveform, 16_000)            # (num_frames, 320) float32
    >>> same = build_frontend(frontend.config())         # the config round-trips

This module also holds the shared input checks (:func:`validate_waveform`) and the on-disk feature
cache (:func:`cached_features`).
"""

from __future__ import annotations

import abc
import hashlib
import inspect
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from memface_hub.arrays_io import load_arrays, save_arrays
from memface_hub.errors import MemFaceInputError

logger = logging.getLogger(__name__)

SAMPLING_RATE = 16_000
VIDEO_FPS = 25.0
SILENCE_PEAK = 1e-4  # a waveform whose peak |amplitude| is below this is treated as silent
MIN_SAMPLES = 400  # one 25 ms analysis window at 16 kHz


CLIP_LEVEL = 0.999           # |sample| at or above this is at full scale
MAX_CLIPPED_FRACTION = 0.01  # more clipped samples than this is distorted speech


def validate_waveform(waveform: np.ndarray, sampling_rate: int, expected: int = SAMPLING_RATE,
                      resample: bool = False, source: str = "audio") -> np.ndarray:
    """Check a mono waveform and return it as float32 ``(samples,)`` at ``expected`` Hz.

    Raises :class:`MemFaceInputError` (one line, ``"<source>: <problem>"``) for a waveform that is not
    a 1-D float array, is empty, shorter than one 25 ms window, holds NaN/inf, is silent (peak
    below ``SILENCE_PEAK``) or clipped (over 1 % of samples at full scale), and for a sampling rate other
    than ``expected`` unless ``resample`` is true, in which case the audio is resampled with librosa (logged at INFO).
    """
    # 1. type, shape, values
    if not isinstance(waveform, np.ndarray):
        raise MemFaceInputError(source, f"waveform must be a numpy array, got {type(waveform).__name__}")
    if not np.issubdtype(waveform.dtype, np.floating):
        raise MemFaceInputError(
            source, f"waveform must be float samples in [-1, 1], got dtype {waveform.dtype} "
                    "(for int16 PCM use samples.astype(np.float32) / 32768)")
    if waveform.ndim != 1:
        raise MemFaceInputError(
            source, f"waveform must be mono with shape (samples,), got shape {waveform.shape} "
                    "(downmix, e.g. waveform.mean(axis=...), first)")
    if waveform.size == 0:
        raise MemFaceInputError(source, "waveform is empty (0 samples)")
    finite = np.isfinite(waveform)
    if not finite.all():
        raise MemFaceInputError(source, f"waveform has {int((~finite).sum())} non-finite samples (NaN or inf)")
    peak = float(np.abs(waveform).max())
    if peak < SILENCE_PEAK:
        raise MemFaceInputError(source, f"waveform is silent (peak amplitude {peak:.2g} < {SILENCE_PEAK:g})")
    clipped = float((np.abs(waveform) >= CLIP_LEVEL).mean())
    if clipped > MAX_CLIPPED_FRACTION:
        raise MemFaceInputError(source, f"waveform is clipped ({clipped:.1%} of samples at full scale, "
                                f"more than {MAX_CLIPPED_FRACTION:.0%}); record or export it at a lower level")

    # 2. sampling rate
    if isinstance(sampling_rate, (float, np.floating)) and float(sampling_rate).is_integer():
        sampling_rate = int(sampling_rate)  # 16000.0 is fine
    if isinstance(sampling_rate, bool) or not isinstance(sampling_rate, (int, np.integer)) or sampling_rate <= 0:
        raise MemFaceInputError(source, f"sampling_rate must be a positive integer in Hz, got {sampling_rate!r}")
    audio = waveform.astype(np.float32, copy=False)
    if sampling_rate != expected:
        if not resample:
            raise MemFaceInputError(
                source, f"sampling rate is {sampling_rate} Hz but this front end expects {expected} Hz "
                        "(resample the audio first, or build the front end with resample=True)")
        import librosa

        logger.info("%s: resampling %d Hz → %d Hz", source, sampling_rate, expected)
        audio = librosa.resample(audio, orig_sr=int(sampling_rate), target_sr=expected).astype(np.float32)

    # 3. length
    if audio.size < MIN_SAMPLES:
        raise MemFaceInputError(
            source, f"waveform is {audio.size / expected * 1000:.1f} ms long, shorter than one "
                    f"{MIN_SAMPLES / expected * 1000:.0f} ms analysis window")
    return audio


def video_frame_count(num_samples: int, sampling_rate: float, fps: float = VIDEO_FPS) -> int:
    """Number of video frames for ``num_samples`` of audio: ``round(duration * fps)``, at least 1."""
    return max(1, int(round(num_samples / sampling_rate * fps)))


def frames_per_video_frame(features: np.ndarray, per_frame: int, num_frames: int) -> np.ndarray:
    """Gather ``per_frame`` consecutive feature rows for each video frame, edge-padding at both ends.

    Row ``j`` of ``features`` ``(T, D)`` must sit at time ``j / (25 * per_frame)`` s; video frame ``i``
    gets rows ``per_frame * i + [0, per_frame)``, clipped to ``[0, T)``.
    Returns ``(num_frames, per_frame, D)``.
    """
    starts = per_frame * np.arange(num_frames)  # (num_frames,)
    index = np.clip(starts[:, None] + np.arange(per_frame)[None, :], 0, len(features) - 1)
    return features[index]  # (num_frames, per_frame, D)


class AudioFrontEnd(abc.ABC):
    """Base class: ``frontend(waveform, sampling_rate, num_frames=None)`` → ``(num_frames, feature_dim)``.

    Subclasses set ``name``, implement :attr:`feature_dim`, :meth:`config` (every constructor
    argument) and :meth:`_extract` (validated 16 kHz float32 audio → features at 25 fps).
    """

    name: str = ""
    sampling_rate: int = SAMPLING_RATE
    fps: float = VIDEO_FPS

    def __init__(self, resample: bool = False):
        self.resample = bool(resample)

    @property
    @abc.abstractmethod
    def feature_dim(self) -> int:
        """Width of one feature row."""

    @abc.abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON-serialisable ``{"name": ..., <every constructor argument>: ...}``."""

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> AudioFrontEnd:
        """Rebuild a front end from :meth:`config` output."""
        arguments = dict(config)
        name = arguments.pop("name", cls.name)
        if name != cls.name:
            raise ValueError(f"config is for front end {name!r}, not {cls.name!r}")
        allowed = set(inspect.signature(cls.__init__).parameters) - {"self"}
        unexpected = sorted(set(arguments) - allowed)
        if unexpected:
            raise ValueError(f"unexpected config keys {unexpected} for front end {cls.name!r}; "
                             f"its arguments are {sorted(allowed)}")
        return cls(**arguments)

    @abc.abstractmethod
    def _extract(self, audio: np.ndarray, num_frames: int) -> np.ndarray:
        """Features for validated audio ``(samples,)`` float32 at 16 kHz → ``(num_frames, feature_dim)``."""

    def __call__(self, waveform: np.ndarray, sampling_rate: int, num_frames: int | None = None) -> np.ndarray:
        """Features for a mono waveform: float32 ``(num_frames, feature_dim)`` at 25 fps.

        ``num_frames`` defaults to ``round(len(waveform) / sampling_rate * 25)``; when given, the
        features are edge-padded or trimmed to exactly that many frames.
        """
        # 1. check (and maybe resample) the input
        audio = validate_waveform(waveform, sampling_rate, self.sampling_rate, self.resample, source="audio")
        if num_frames is None:
            num_frames = video_frame_count(len(waveform), sampling_rate, self.fps)
        elif isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
            raise MemFaceInputError(f"num_frames={num_frames!r}", "must be a positive integer")
        # 2. extract
        features = self._extract(audio, int(num_frames))
        expected_shape = (int(num_frames), self.feature_dim)
        if features.shape != expected_shape:
            raise RuntimeError(f"{self.name} front end returned {features.shape}, expected {expected_shape}")
        return np.ascontiguousarray(features, dtype=np.float32)

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.config().items() if key != "name")
        return f"{type(self).__name__}({arguments})"


def cache_key(frontend: AudioFrontEnd, waveform: np.ndarray, sampling_rate: int, num_frames: int | None) -> str:
    """sha256 hex digest of the front end's config, the waveform (dtype, shape, bytes), its rate and ``num_frames``."""
    waveform = np.ascontiguousarray(waveform)
    digest = hashlib.sha256()
    digest.update(json.dumps(frontend.config(), sort_keys=True).encode())
    digest.update(f"\0{waveform.dtype.str}{waveform.shape}\0".encode())
    digest.update(waveform.tobytes())
    digest.update(f"\0sampling_rate={int(sampling_rate)}\0num_frames={num_frames}".encode())
    return digest.hexdigest()


def cached_features(frontend: AudioFrontEnd, waveform: np.ndarray, sampling_rate: int,
                    num_frames: int | None, cache_dir: str | Path) -> np.ndarray:
    """``frontend(waveform, sampling_rate, num_frames)``, memoised in ``<cache_dir>/<key[:16]>.safetensors``.

    The key (:func:`cache_key`) covers the front end's config, the waveform bytes, the sampling rate
    and ``num_frames``. A hit does not call the front end; an unreadable or mis-shaped cache file is
    recomputed and overwritten. Files are written atomically.
    Returns float32 ``(num_frames, feature_dim)``.
    """
    cache_dir = Path(cache_dir)
    key = cache_key(frontend, waveform, sampling_rate, num_frames)
    path = cache_dir / f"{key[:16]}.safetensors"
    if path.is_file():
        try:
            features = load_arrays(path)["features"]
        except (MemFaceInputError, KeyError) as err:
            logger.warning("ignoring unreadable feature cache file %s (%s)", path, err)
        else:
            if features.ndim == 2 and (num_frames is None or len(features) == num_frames):
                logger.debug("feature cache hit %s", path)
                return features
            logger.warning("ignoring feature cache file %s with shape %s", path, features.shape)
    features = frontend(waveform, sampling_rate, num_frames)
    cache_dir.mkdir(parents=True, exist_ok=True)
    save_arrays(path, {"features": features},
                metadata={"frontend": json.dumps(frontend.config(), sort_keys=True), "key": key})
    return features
