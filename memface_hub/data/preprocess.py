"""Clip preprocessing: video → a clip shard (see :mod:`memface_hub.io.shards`).

decode at 25 fps → track → canonical face → smoothed poses → canonical mouth vertices →
crop transforms → aligned crops (second decoding pass, so memory stays bounded) → 16 kHz
audio → metadata. Each clip is written into a temporary folder and renamed into place, so
a shard is either complete or absent; finished shards are skipped on the next run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .. import __version__
from ..arrays_io import save_arrays
from ..errors import MemFaceInputError
from ..face.crop import CropLayout, crop_transforms, warp_to_crop
from ..face.geometry import canonical_face, canonical_mouth_vertices, fit_poses, neutral_mouth
from ..face.tracker import FaceTracker
from ..io.audio import AUDIO_SAMPLE_RATE, load_audio, write_wav
from ..io.shards import (
    AUDIO_FILE,
    CROPS_FILE,
    META_FILE,
    SHARD_FORMAT,
    SHARD_VERSION,
    TRACK_FILE,
    is_complete_shard,
    validate_track_arrays,
)
from ..io.video import DEFAULT_FPS, VideoWriter, bounded_size, iter_frames, probe
from ..parallel import limit_worker_threads

logger = logging.getLogger(__name__)

LANDMARKER_ID = "mediapipe-face-landmarker-v1"
MIN_TRACKED_FRACTION = 0.5


@dataclass
class ClipResult:
    """What happened to one clip. ``status`` is ``"done"``, ``"skipped"`` or ``"failed"``."""

    video: str
    clip_id: str
    status: str
    frames: int = 0
    frames_tracked: int = 0
    frames_valid: int = 0
    seconds: float = 0.0
    error: str = ""

    @property
    def frames_dropped(self) -> int:
        return self.frames - self.frames_valid


def clip_id_for(video: str | os.PathLike) -> str:
    """A folder-safe id from the file name (``"my clip.mp4"`` → ``"my_clip"``)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(video).stem).strip("._") or "clip"
    return stem


def unique_clip_ids(videos: Sequence[str | os.PathLike]) -> list[str]:
    """Clip ids for a batch; names that collide get a short hash of their absolute path."""
    ids = [clip_id_for(video) for video in videos]
    counts: dict[str, int] = {}
    for clip_id in ids:
        counts[clip_id] = counts.get(clip_id, 0) + 1
    return [clip_id if counts[clip_id] == 1 else
            f"{clip_id}-{hashlib.sha1(str(Path(video).resolve()).encode()).hexdigest()[:8]}"
            for clip_id, video in zip(ids, videos)]


def file_digest(path: str | os.PathLike, limit: int = 1 << 24) -> str:
    """sha256 of the file's size and first ``limit`` bytes (a cheap, stable source id)."""
    digest = hashlib.sha256(str(os.path.getsize(path)).encode())
    with open(path, "rb") as file:
        digest.update(file.read(limit))
    return digest.hexdigest()


def preprocess_clip(video: str | os.PathLike, out_dir: str | os.PathLike, clip_id: str | None = None,
                    tracker: FaceTracker | None = None, layout: CropLayout | None = None,
                    fps: float = DEFAULT_FPS, require_audio: bool = True, max_seconds: float | None = None,
                    progress: bool = False, max_short_side: int | None = None) -> ClipResult:
    """Preprocess one video into ``out_dir/<clip_id>/``. Skips a finished shard.

    ``max_short_side`` bounds the frames (e.g. 1080: a 4K video is tracked and cropped at 1920×1080, see
    :func:`~memface_hub.io.video.bounded_size`); every coordinate in the shard is then in the scaled frames,
    whose size is recorded as ``frame_size`` in its metadata (``None``: the video's own size).

    Raises :class:`MemFaceInputError` for bad input (missing/unreadable file, no video, no
    audio when ``require_audio``, no face, zero length); nothing is left behind then.
    """
    started = time.perf_counter()
    video = Path(video)
    clip_id = clip_id or clip_id_for(video)
    out_dir = Path(out_dir)
    final = out_dir / clip_id
    if is_complete_shard(final):
        return ClipResult(str(video), clip_id, "skipped")
    if final.exists():
        raise MemFaceInputError(final, "exists but is not a finished shard; remove it to preprocess again")
    layout = layout or CropLayout()
    info = probe(video)
    if not info.has_video:
        raise MemFaceInputError(video, "no video stream (audio only?)")
    if require_audio and not info.has_audio:
        raise MemFaceInputError(video, "no audio stream (pass require_audio=False / --allow-silent for silent clips)")
    if max_seconds is not None and info.duration > max_seconds:
        raise MemFaceInputError(video, f"clip is {info.duration:.1f} s long, the limit is {max_seconds:g} s")
    size = bounded_frame_size(video, fps, max_short_side)
    tracker = tracker or FaceTracker()

    # 1. track every frame
    track = tracker.track(iter_frames(video, fps=fps, size=size), fps=fps, progress=progress,
                          total=int(info.duration * fps) or None)
    if not track.detected.any():
        raise MemFaceInputError(video, "no face found in any frame")
    if track.tracked_fraction < MIN_TRACKED_FRACTION:
        raise MemFaceInputError(video, f"a face was found in only {track.tracked_fraction:.0%} of frames "
                                f"(need {MIN_TRACKED_FRACTION:.0%})")
    # 2. geometry: canonical face, poses, canonical mouth vertices, crop transforms
    canonical = canonical_face(track.landmarks, track.valid)
    poses = fit_poses(track.landmarks, canonical, track.valid)
    mouth = canonical_mouth_vertices(track.landmarks, poses)
    neutral = neutral_mouth(mouth, track.valid)
    affines = crop_transforms(track.landmarks, canonical, layout, track.valid)
    arrays = {
        "landmarks": track.landmarks, "blendshapes": track.blendshapes, "transforms": track.transforms,
        "detected": track.detected.astype(np.uint8), "valid": track.valid.astype(np.uint8),
        "poses": poses.as_array(), "crop_affines": affines.astype(np.float32),
        "mouth_vertices": mouth, "canonical_face": canonical, "neutral_mouth": neutral,
    }
    validate_track_arrays(arrays, str(video))

    out_dir.mkdir(parents=True, exist_ok=True)
    partial = out_dir / f".{clip_id}.partial-{os.getpid()}"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir()
    try:
        # 3. aligned crops (second decoding pass)
        with VideoWriter(partial / CROPS_FILE, fps=fps, crf=12) as writer:
            for index, frame in enumerate(iter_frames(video, fps=fps, size=size)):
                if index >= track.num_frames:
                    break
                writer.write(warp_to_crop(frame, affines[index], layout.size))
        # 4. audio
        audio_samples = 0
        if info.has_audio:
            audio = load_audio(video, AUDIO_SAMPLE_RATE)
            audio_samples = int(audio.size)
            write_wav(partial / AUDIO_FILE, audio, AUDIO_SAMPLE_RATE)
        save_arrays(partial / TRACK_FILE, arrays, metadata={"format": SHARD_FORMAT})
        seconds = time.perf_counter() - started
        meta = {
            "format": SHARD_FORMAT, "format_version": SHARD_VERSION, "memface_version": __version__,
            "clip_id": clip_id, "source": str(video), "source_sha256": file_digest(video),
            "source_size": [info.width, info.height], "source_fps": info.fps,
            "frame_size": list(size) if size else None,
            "fps": fps, "num_frames": track.num_frames,
            "frames_tracked": int(track.detected.sum()), "frames_valid": int(track.valid.sum()),
            "sample_rate": AUDIO_SAMPLE_RATE if info.has_audio else None, "audio_samples": audio_samples,
            "crop_layout": asdict(layout), "landmarker": LANDMARKER_ID,
            "blendshape_names": track.blendshape_names, "preprocess_seconds": round(seconds, 3),
        }
        # meta.json last: its presence marks the shard complete
        (partial / META_FILE).write_text(json.dumps(meta, indent=1))
        os.replace(partial, final)
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)
    return ClipResult(str(video), clip_id, "done", track.num_frames, int(track.detected.sum()),
                      int(track.valid.sum()), time.perf_counter() - started)


def bounded_frame_size(video: str | os.PathLike, fps: float, max_short_side: int | None) -> tuple[int, int] | None:
    """``(width, height)`` to decode ``video`` at so that it fits ``max_short_side``, or ``None`` when it
    already does. Measured on a decoded frame, so a rotated phone video is judged as it is shown."""
    if max_short_side is None:
        return None
    frames = iter_frames(video, fps=fps, max_frames=1)
    try:
        height, width = next(frames).shape[:2]
    finally:
        frames.close()
    size = bounded_size(width, height, max_short_side)
    if size == (width, height):
        return None
    logger.info("%s: %d×%d frames are scaled to %d×%d (at most %dp)", video, width, height, *size, max_short_side)
    return size


def _preprocess_safely(video: str, out_dir: str, clip_id: str, options: dict,
                       tracker: FaceTracker | None = None) -> ClipResult:
    """Run :func:`preprocess_clip`; turn a bad input into a failed :class:`ClipResult`."""
    try:
        return preprocess_clip(video, out_dir, clip_id=clip_id, tracker=tracker, **options)
    except (MemFaceInputError, FileNotFoundError) as err:
        return ClipResult(video, clip_id, "failed", error=str(err))
    except (RuntimeError, ValueError, OSError) as err:
        return ClipResult(video, clip_id, "failed", error=f"{video}: {type(err).__name__}: {err}".splitlines()[0])


_WORKER_TRACKER: FaceTracker | None = None


def _worker_init() -> None:
    global _WORKER_TRACKER
    limit_worker_threads()
    _WORKER_TRACKER = FaceTracker()


def _worker_run(job: tuple[str, str, str, dict]) -> ClipResult:
    return _preprocess_safely(*job, tracker=_WORKER_TRACKER)


def process_share() -> tuple[int, int]:
    """``(index, count)`` of this process under ``accelerate launch`` / torchrun, else ``(0, 1)``."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import PartialState

        state = PartialState()
        return state.process_index, state.num_processes
    return 0, 1


def preprocess_clips(videos: Sequence[str | os.PathLike], out_dir: str | os.PathLike, workers: int = 1,
                     progress: bool = True, clip_ids: Sequence[str] | None = None, **options) -> list[ClipResult]:
    """Preprocess many clips; failures are reported per clip and never stop the batch.

    ``clip_ids`` names the shards (default: from the file names, see :func:`unique_clip_ids`).
    Under ``accelerate launch`` each process takes every ``num_processes``-th clip. ``workers``
    > 1 runs that share in a process pool (one tracker per worker).
    """
    videos = [str(video) for video in videos]
    ids = list(clip_ids) if clip_ids is not None else unique_clip_ids(videos)
    if len(ids) != len(videos) or len(set(ids)) != len(ids):
        raise ValueError(f"need one distinct clip id per video ({len(videos)} videos, {len(set(ids))} ids)")
    index, count = process_share()
    jobs = [(video, str(out_dir), clip_id, options)
            for position, (video, clip_id) in enumerate(zip(videos, ids)) if position % count == index]
    results: list[ClipResult] = []
    bar = tqdm(total=len(jobs), disable=not progress, desc="preprocessing", unit="clip")
    if workers <= 1 or len(jobs) <= 1:
        tracker = None
        for job in jobs:
            if tracker is None and not is_complete_shard(Path(job[1]) / job[2]):
                try:
                    tracker = FaceTracker()
                except FileNotFoundError as err:
                    results.append(ClipResult(job[0], job[2], "failed", error=str(err)))
                    bar.update()
                    continue
            results.append(_preprocess_safely(*job, tracker=tracker))
            bar.update()
    else:
        context = multiprocessing.get_context("spawn")
        with context.Pool(min(workers, len(jobs)), initializer=_worker_init) as pool:
            for result in pool.imap(_worker_run, jobs):
                results.append(result)
                bar.update()
    bar.close()
    for result in results:
        if result.status == "failed":
            logger.error("%s", result.error)
    return results


def summarise(results: Sequence[ClipResult]) -> dict:
    """Counts over a batch: clips done/skipped/failed, frames tracked and dropped."""
    done = [r for r in results if r.status == "done"]
    frames = sum(r.frames for r in done)
    return {
        "clips_done": len(done),
        "clips_skipped": sum(r.status == "skipped" for r in results),
        "clips_failed": sum(r.status == "failed" for r in results),
        "frames": frames,
        "frames_tracked": sum(r.frames_tracked for r in done),
        "frames_dropped": sum(r.frames_dropped for r in done),
        "tracked_fraction": (sum(r.frames_tracked for r in done) / frames) if frames else 0.0,
    }
