"""Audio-to-expression training data: shards → (features, expressions) windows."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..audio import AudioFrontEnd, cached_features
from ..audio.augment import augment_audio
from ..audio.base import SILENCE_PEAK
from ..errors import MemFaceInputError
from ..face.mouth_model import MouthModel
from ..io.audio import AUDIO_SAMPLE_RATE, load_audio
from ..io.shards import find_shards, load_shard

FEATURE_CACHE = "features"

logger = logging.getLogger(__name__)


@dataclass
class A2EClip:
    """One clip's training arrays. ``T`` frames at 25 fps."""

    clip_id: str
    features: np.ndarray      # (T, F) float32
    expressions: np.ndarray   # (T, K) float32 targets e
    neutral: np.ndarray       # (V, 3) the clip's neutral mouth
    valid: np.ndarray         # (T,) bool tracked frames
    vertices: np.ndarray      # (T, V, 3) tracked canonical mouth vertices


def read_splits(path: str | os.PathLike, key: str = "splits") -> dict[str, list[str]]:
    """``{"train": [clip ids], "val": [...], "test": [...]}`` from a demo ``corpus.json`` or a plain JSON.

    ``key``: which object of a ``corpus.json`` (``"a2e_splits"`` in a multi-person corpus v2 keeps test
    sentences and the held-out voice out of training too); a file without it falls back to ``splits``.
    """
    data = json.loads(Path(path).read_text())
    splits = data.get(key, data.get("splits", data))
    if not isinstance(splits, dict) or not all(isinstance(v, list) for v in splits.values()):
        raise MemFaceInputError(path, "expected {'splits': {'train': [...], 'val': [...], ...}}")
    return {str(name): [str(i) for i in ids] for name, ids in splits.items()}


def hash_split(clip_ids: Sequence[str], val_fraction: float = 0.1) -> dict[str, list[str]]:
    """Deterministic train/val split by a stable hash of the clip id (when no split file is given)."""
    def unit(clip_id: str) -> float:
        return int(hashlib.sha256(clip_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF

    val = [c for c in clip_ids if unit(c) < val_fraction] or list(clip_ids[-1:])
    return {"train": [c for c in clip_ids if c not in val], "val": val}


def load_a2e_clips(shard_root: str | os.PathLike, clip_ids: Sequence[str] | None, frontend: AudioFrontEnd,
                   mouth_model: MouthModel, progress: bool = False, skip_silent: bool = True) -> list[A2EClip]:
    """Load shards (all under ``shard_root``, or only ``clip_ids``) with their cached audio features.

    A shard without speech teaches nothing about it: one with no audio track (a silent real clip) or
    a digitally silent one (peak below ``SILENCE_PEAK``, e.g. a muted sound track) is skipped with a
    log line, or refused with ``skip_silent=False``. Refused too: no shard with sound at all.
    """
    root = Path(shard_root)
    paths = [root / c for c in clip_ids] if clip_ids is not None else find_shards(root)
    clips, silent = [], []
    for path in tqdm(paths, disable=not progress, desc="loading clips", unit="clip"):
        shard = load_shard(path)
        audio = load_audio(shard.audio_path) if shard.audio_path is not None else None
        if audio is None or not audio.size or float(np.abs(audio).max()) < SILENCE_PEAK:
            reason = "has no audio (preprocessed with --allow-silent?)" if audio is None else "audio is silent"
            if not skip_silent:
                raise MemFaceInputError(path, f"shard {reason}")
            logger.info("skipping %s: the shard %s", path.name, reason)
            silent.append(path.name)
            continue
        features = cached_features(frontend, audio, AUDIO_SAMPLE_RATE, shard.num_frames, path / FEATURE_CACHE)
        expressions = mouth_model.encode(shard.mouth_vertices, shard.neutral_mouth).astype(np.float32)
        clips.append(A2EClip(path.name, features.astype(np.float32), expressions, shard.neutral_mouth,
                             shard.valid, shard.mouth_vertices))
    if paths and not clips:
        raise MemFaceInputError(root, f"none of the {len(paths)} shards has sound")
    if silent:
        logger.info("skipped %d silent shard(s) of %d", len(silent), len(paths))
    return clips


def stretch_clip(clip: A2EClip, factor: float, features: np.ndarray) -> A2EClip:
    """``clip`` with its audio played ``factor`` × as long: ``features`` ``(T', F)`` of the stretched audio, and
    the targets resampled in time to ``T'`` frames (linear; a frame is valid where both neighbours are)."""
    count = len(features)
    source = np.clip(np.arange(count) / factor, 0, len(clip.expressions) - 1)           # (T',) old frame index
    lower = np.floor(source).astype(np.int64)
    upper = np.minimum(lower + 1, len(clip.expressions) - 1)
    share = (source - lower).astype(np.float32)

    def resample(values: np.ndarray) -> np.ndarray:
        weight = share.reshape((-1,) + (1,) * (values.ndim - 1))
        return (values[lower] * (1 - weight) + values[upper] * weight).astype(np.float32)

    return A2EClip(clip.clip_id, features.astype(np.float32), resample(clip.expressions), clip.neutral,
                   clip.valid[lower] & clip.valid[upper], resample(clip.vertices))


def augmented_clips(shard_root: str | os.PathLike, clips: Sequence[A2EClip], frontend: AudioFrontEnd, copies: int,
                    seed: int = 0, progress: bool = False) -> list[A2EClip]:
    """``copies`` augmented versions of each clip (``copies × len(clips)``): its shard's audio through
    :func:`~memface_hub.audio.augment.augment_audio` (speed and pitch, reverberation, band-limiting,
    noise), features of that audio (not cached: every copy differs), the targets stretched with the speed."""
    if copies <= 0:
        return []
    rng = np.random.default_rng(seed)
    out = []
    for clip in tqdm(clips, disable=not progress, desc="augmenting clips", unit="clip"):
        audio = load_audio(load_shard(Path(shard_root) / clip.clip_id).audio_path)
        for _ in range(copies):
            sound, factor = augment_audio(audio, rng)
            count = max(1, int(round(len(clip.features) * factor)))
            out.append(stretch_clip(clip, factor, frontend(sound, AUDIO_SAMPLE_RATE, count)))
    return out


class A2EWindows(torch.utils.data.Dataset):
    """Fixed-length windows over clips; shorter tails are padded and masked.

    Items: ``features (W, F)``, ``expressions (W, K)``, ``neutral (V, 3)``, ``mask (W,)`` (True at
    real, tracked frames), ``padding (W,)`` (True at padding).
    """

    def __init__(self, clips: Sequence[A2EClip], window: int = 64, stride: int | None = None):
        if window < 2:
            raise ValueError(f"window must be ≥ 2 frames, got {window}")
        self.clips = list(clips)
        self.window = int(window)
        stride = int(stride or window)
        self.items = []
        for index, clip in enumerate(self.clips):
            length = len(clip.features)
            starts = list(range(0, max(length - self.window, 0) + 1, stride))
            if starts[-1] + self.window < length:
                starts.append(length - self.window)
            self.items += [(index, start) for start in starts]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        index, start = self.items[item]
        clip = self.clips[index]
        end = min(start + self.window, len(clip.features))
        count = end - start
        features = np.zeros((self.window, clip.features.shape[1]), np.float32)
        expressions = np.zeros((self.window, clip.expressions.shape[1]), np.float32)
        mask = np.zeros(self.window, bool)
        features[:count], expressions[:count] = clip.features[start:end], clip.expressions[start:end]
        mask[:count] = clip.valid[start:end]
        padding = np.ones(self.window, bool)
        padding[:count] = False
        return {"features": torch.from_numpy(features), "expressions": torch.from_numpy(expressions),
                "neutral": torch.from_numpy(clip.neutral.astype(np.float32)), "mask": torch.from_numpy(mask),
                "padding": torch.from_numpy(padding)}
