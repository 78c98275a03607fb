"""The on-disk format of one preprocessed clip (a "shard") and its loader.

``<root>/<clip_id>/``
    ``meta.json``          format version, source, fps, crop layout, counts (written last)
    ``track.safetensors``  per-frame arrays, see :class:`ClipShard`
    ``crops.mp4``          aligned S×S face crops at ``fps`` (H.264)
    ``audio.wav``          16 kHz mono PCM (absent for silent clips)

Only safetensors and JSON are deserialised; shapes and dtypes are validated on load.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..arrays_io import check_arrays, load_arrays
from ..errors import MemFaceInputError
from ..face.geometry import Poses
from ..face.landmarks import MOUTH_VERTICES, NUM_BLENDSHAPES, NUM_LANDMARKS

SHARD_FORMAT = "memface-clip-shard"
SHARD_VERSION = 1
META_FILE = "meta.json"
TRACK_FILE = "track.safetensors"
CROPS_FILE = "crops.mp4"
AUDIO_FILE = "audio.wav"

# name → (shape with "T" for frames, dtype)
TRACK_ARRAYS: dict[str, tuple[tuple, str]] = {
    "landmarks": (("T", NUM_LANDMARKS, 3), "float32"),
    "blendshapes": (("T", NUM_BLENDSHAPES), "float32"),
    "transforms": (("T", 4, 4), "float32"),
    "detected": (("T",), "uint8"),
    "valid": (("T",), "uint8"),
    "poses": (("T", 13), "float32"),
    "crop_affines": (("T", 2, 3), "float32"),
    "mouth_vertices": (("T", len(MOUTH_VERTICES), 3), "float32"),
    "canonical_face": ((NUM_LANDMARKS, 3), "float32"),
    "neutral_mouth": ((len(MOUTH_VERTICES), 3), "float32"),
}


@dataclass
class ClipShard:
    """One preprocessed clip, loaded. ``T`` = frames at ``meta["fps"]``."""

    path: Path
    meta: dict
    landmarks: np.ndarray        # (T, 478, 3) frame pixels
    blendshapes: np.ndarray      # (T, 52)
    transforms: np.ndarray       # (T, 4, 4)
    detected: np.ndarray         # (T,) bool
    valid: np.ndarray            # (T,) bool
    poses: Poses                 # canonical → frame
    crop_affines: np.ndarray     # (T, 2, 3) frame → crop
    mouth_vertices: np.ndarray   # (T, V, 3) canonical units
    canonical_face: np.ndarray   # (478, 3) canonical units
    neutral_mouth: np.ndarray    # (V, 3) canonical units

    @property
    def num_frames(self) -> int:
        return int(self.landmarks.shape[0])

    @property
    def crops_path(self) -> Path:
        return self.path / CROPS_FILE

    @property
    def audio_path(self) -> Path | None:
        path = self.path / AUDIO_FILE
        return path if path.exists() else None


def is_complete_shard(path: str | os.PathLike) -> bool:
    """A shard folder is complete once its ``meta.json`` exists (it is written last)."""
    return (Path(path) / META_FILE).is_file()


def validate_track_arrays(arrays: dict[str, np.ndarray], source: str) -> int:
    """Check names, shapes and dtypes of a shard's arrays; return the frame count ``T``."""
    landmarks = arrays.get("landmarks")
    num_frames = int(landmarks.shape[0]) if landmarks is not None and landmarks.ndim else 0
    check_arrays(arrays, {name: (tuple(num_frames if dim == "T" else dim for dim in shape), dtype)
                          for name, (shape, dtype) in TRACK_ARRAYS.items()}, source)
    if num_frames <= 0:
        raise MemFaceInputError(source, "shard has no frames")
    return num_frames


def load_shard(path: str | os.PathLike) -> ClipShard:
    """Load and validate a shard folder written by :func:`memface_hub.data.preprocess.preprocess_clip`."""
    path = Path(path)
    if not is_complete_shard(path):
        raise MemFaceInputError(path, f"not a finished clip shard (no {META_FILE})")
    meta = json.loads((path / META_FILE).read_text())
    if meta.get("format") != SHARD_FORMAT or meta.get("format_version") != SHARD_VERSION:
        raise MemFaceInputError(path, f"unsupported shard format {meta.get('format')!r} "
                                f"version {meta.get('format_version')!r} (expected {SHARD_FORMAT} v{SHARD_VERSION})")
    arrays = load_arrays(path / TRACK_FILE)
    validate_track_arrays(arrays, str(path / TRACK_FILE))
    return ClipShard(
        path=path, meta=meta,
        landmarks=arrays["landmarks"], blendshapes=arrays["blendshapes"], transforms=arrays["transforms"],
        detected=arrays["detected"].astype(bool), valid=arrays["valid"].astype(bool),
        poses=Poses.from_array(arrays["poses"]), crop_affines=arrays["crop_affines"].astype(np.float64),
        mouth_vertices=arrays["mouth_vertices"], canonical_face=arrays["canonical_face"],
        neutral_mouth=arrays["neutral_mouth"])


def find_shards(root: str | os.PathLike) -> list[Path]:
    """Finished shard folders directly under ``root``, sorted by name."""
    root = Path(root)
    return sorted(child for child in root.iterdir() if child.is_dir() and is_complete_shard(child))


def fit_mouth_model(root: str | os.PathLike, num_components: int = 16, clip_ids=None):
    """Fit a :class:`~memface_hub.face.mouth_model.MouthModel` on every valid frame of the shards under
    ``root`` (or only those named in ``clip_ids``, e.g. the training split).

    Deltas are taken from each clip's own neutral mouth, so speakers share one basis.
    """
    from ..face.mouth_model import MouthModel

    paths = find_shards(root)
    if clip_ids is not None:
        wanted = set(clip_ids)
        paths = [path for path in paths if path.name in wanted]
    if not paths:
        raise MemFaceInputError(root, "no finished clip shards found")
    deltas = []
    for path in paths:
        shard = load_shard(path)
        deltas.append(shard.mouth_vertices[shard.valid] - shard.neutral_mouth)
    return MouthModel.fit(np.concatenate(deltas), num_components=num_components)
