"""Real-people figures: adapt to held-out real people, generate from their own speech, compare with their video.

    python scripts/real_people_eval.py ../shared/real_clips

Protocol (docs/EVALUATION.md of the design notes, "Real people"): for each test person of the people
file (default: the committed ``memface_hub/data/real_people.json``) with a real clip that has
speech, the clip is cut at ``c = min(15 s, 0.7 × length)``; the part before ``c`` is the
adaptation video (``adapt_speaker``: memory only, and again with a 60 s renderer fine-tune and a 15 s a2e
fine-tune on the clip's own speech), the
audio after ``c`` drives generation with the adapted speaker, and the real frames after ``c`` are
the ground truth. Generated and real frames are re-tracked by the same landmarker; ΔE of the
lower face, mouth sharpness ratio and lip correlation come from
:mod:`memface_hub.evaluation.real_people`.

Writes ``docs/results/real_people.json`` (with the commit, config and command) and
``outputs/real_people_grid.png`` (real | memory only | fine-tuned, one row per held-out person: look at
it, but do not commit it — it holds frames of real people). The clips are read from the folder given;
nothing cut from them is kept in the repository (work files go to ``--work``, outside it by default).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from memface_hub.arrays_io import write_text_atomic
from memface_hub.audio.base import SILENCE_PEAK
from memface_hub.data.corpus import VIDEO_SUFFIXES, load_people
from memface_hub.evaluation.real_people import adaptation_cut, compare_videos, video_statistics
from memface_hub.evaluation.report import provenance, write_markdown_section
from memface_hub.face.tracker import FaceTracker
from memface_hub.io.audio import AUDIO_SAMPLE_RATE, load_audio
from memface_hub.io.video import DEFAULT_FPS, VideoWriter, iter_frames, probe
from memface_hub.pipeline import MemFacePipeline
from memface_hub.renderer import MemFaceRenderer
from memface_hub.training.adapt import adapt_speaker

logger = logging.getLogger("real_people_eval")
ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("memory_only", "finetune_60s")
REFERENCE = "own_frames_before_cut"        # not generated: the real adaptation frames against the test frames
SUMMARY_KEYS = ("delta_e", "sharpness_ratio", "lip_corr_0")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clips", nargs="+", help="folders of real clips (e.g. ../shared/real_clips)")
    parser.add_argument("--pipeline", default=None, help="pipeline folder or Hub id (default: the bundled one)")
    parser.add_argument("--renderer", default=None, help="use this renderer folder instead of the pipeline's")
    parser.add_argument("--people", default=None, help="people file (default: the committed split)")
    parser.add_argument("--split", default="test", help="which people to evaluate (default: test)")
    parser.add_argument("--finetune-seconds", type=float, default=60.0, help="renderer fine-tune budget (0: skip)")
    parser.add_argument("--a2e-finetune-seconds", type=float, default=15.0,
                        help="a2e fine-tune budget of the fine-tuned variant, on the clip's own speech (paper Sec. "
                             "4.2: both models are fine-tuned on the adaptation video; 0: the renderer only)")
    parser.add_argument("--out", default=str(ROOT / "docs/results/real_people.json"))
    parser.add_argument("--grid", default=str(ROOT / "outputs/real_people_grid.png"),
                        help="PNG of real vs generated frames; it shows real people, so it stays out of the "
                             "repository (outputs/ is ignored)")
    parser.add_argument("--readme", default=str(ROOT / "docs/results/README.md"), help="results page to update")
    parser.add_argument("--work", default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--detail-band", type=float, default=None,
                        help="crop pixels below which the memory's texture is used (default: the pipeline's)")
    parser.add_argument("--mouth-region", type=float, default=None,
                        help="mouth widths around the lips where the render is pasted (0: the whole mouth box; "
                             "default: the pipeline's)")
    parser.add_argument("--no-memory-detail", action="store_true",
                        help="paste the upscaled crop alone (no output-resolution detail from the memory)")
    parser.add_argument("--no-articulation-gain", action="store_true",
                        help="ignore the speaker's articulation gain measured at adaptation")
    return parser.parse_args(argv)


def held_out_clips(folders: list[str], people_file: str | None, split: str) -> list[tuple[str, Path]]:
    """``(person, clip)`` for each person of ``split``: their first clip with a sound track."""
    people = load_people(people_file)
    files = {path.stem: path for folder in folders for path in sorted(Path(folder).iterdir())
             if path.suffix.lower() in VIDEO_SUFFIXES}
    chosen = []
    for person in people.values():
        if person.split != split:
            continue
        for clip in person.clips:
            if clip in files and probe(files[clip]).has_audio:
                chosen.append((person.name, files[clip]))
                break
    return chosen


def cut_clip(clip: Path, work: Path) -> tuple[Path, np.ndarray, list[np.ndarray], float]:
    """Adaptation video (before ``c``), test audio and real test frames (after ``c``), and ``c``."""
    frames = list(iter_frames(clip, fps=DEFAULT_FPS))
    audio = load_audio(clip, AUDIO_SAMPLE_RATE)
    cut = adaptation_cut(len(frames), DEFAULT_FPS)                                  # frames
    cut_sample = int(round(cut / DEFAULT_FPS * AUDIO_SAMPLE_RATE))
    adaptation = work / "adaptation.mp4"
    with VideoWriter(adaptation, fps=DEFAULT_FPS, audio=(audio[:cut_sample], AUDIO_SAMPLE_RATE), crf=12) as writer:
        for frame in frames[:cut]:
            writer.write(frame[:frame.shape[0] // 2 * 2, :frame.shape[1] // 2 * 2])
    test_frames = frames[cut:]
    test_audio = audio[cut_sample:cut_sample + int(round(len(test_frames) / DEFAULT_FPS * AUDIO_SAMPLE_RATE))]
    return adaptation, test_audio, test_frames, cut / DEFAULT_FPS


def face_box(landmarks: np.ndarray, shape) -> tuple[int, int, int, int]:
    """A square around the face (landmarks ``(478, 2|3)``), for the grid."""
    points = landmarks[:, :2]
    centre = (points.min(0) + points.max(0)) / 2
    side = 1.3 * float(np.ptp(points, axis=0).max())
    x0, y0 = np.clip(np.round(centre - side / 2).astype(int), 0, [shape[1] - 1, shape[0] - 1])
    side = int(min(side, shape[1] - x0, shape[0] - y0))
    return x0, y0, x0 + side, y0 + side


def write_grid(path: Path, rows: list[dict], tile: int = 96, picks: int = 3) -> None:
    """One row per person: ``picks`` real test frames | the same instants generated, per variant made."""
    lines = []
    names = ["real", *(variant for variant in VARIANTS if any(variant in row for row in rows))]
    for row in rows:
        real = row["real"]
        indices = np.linspace(0, len(real) - 1, picks + 2)[1:-1].round().astype(int)
        box = row["box"]
        tiles = []
        for name in names:
            frames = row.get(name)
            for index in indices:
                if frames is None or index >= len(frames):
                    tiles.append(np.zeros((tile, tile, 3), np.uint8))
                    continue
                x0, y0, x1, y1 = box
                tiles.append(cv2.resize(frames[index][y0:y1, x0:x1], (tile, tile), interpolation=cv2.INTER_AREA))
            tiles.append(np.full((tile, 4, 3), 255, np.uint8))
        lines.append(np.concatenate(tiles[:-1], axis=1))
    grid = np.concatenate(lines, axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_small_png(grid, path)


def save_small_png(image: np.ndarray, path: Path) -> None:
    """An RGB image as a palette PNG (256 colours): a few hundred kB for a docs picture instead of ~1 MB."""
    from PIL import Image

    Image.fromarray(image).quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def markdown_table(result: dict) -> str:
    """Per person and variant, then the means, as a Markdown table."""
    lines = [f"`{result['command']}` at `{result['git_commit']}`; held-out people of the `{result['config']['split']}` "
             "split, adapted on the first min(15 s, 70 %) of their clip, generated from the rest of its sound.", "",
             "| person (clip) | variant | ΔE lower face ↓ (≤ 3) | mouth sharpness ratio (0.8–1.25) "
             "| lip corr lag 0 ↑ | "
             "best lag | adapt s | test frames |", "|---|---|---|---|---|---|---|---|"]
    for r in result["people"]:
        lines.append(f"| {r['person']} ({r['clip']}) | {r['variant']} | {r['delta_e']:.2f} | "
                     f"{r['sharpness_ratio']:.2f} | "
                     f"{r['lip_corr_0']:.2f} | {r['lip_lag']} | {r['adapt_seconds']:.0f} | {r['test_frames']} |")
    for variant, figures in result["summary"].items():
        lines.append(f"| **mean of {figures['people']}** | {variant} | **{figures['delta_e']:.2f}** | "
                     f"**{figures['sharpness_ratio']:.2f}** | **{figures['lip_corr_0']:.2f}** | | | |")
    for item in result.get("skipped", []):
        lines.append(f"\nSkipped {item['person']} ({item['clip']}): {item['reason']}.")
    return "\n".join(lines)


def mean(values) -> float:
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for folder in args.clips:
        if not Path(folder).is_dir():
            logger.error("%s: not a folder of real clips (the shared real clips live in ../shared/real_clips)", folder)
            return 2
    clips = held_out_clips(args.clips, args.people, args.split)
    if not clips:
        logger.error("no %s person of the people file has a clip with sound in %s", args.split, args.clips)
        return 2
    pipe = MemFacePipeline.from_pretrained(args.pipeline)
    if args.renderer:
        pipe = MemFacePipeline(pipe.a2e, MemFaceRenderer.from_pretrained(args.renderer), pipe.frontend)
    pipe.memory_detail = not args.no_memory_detail
    pipe.articulation = not args.no_articulation_gain
    if args.detail_band is not None:
        pipe.memory_detail_band = args.detail_band
    if args.mouth_region is not None:
        pipe.mouth_region = args.mouth_region
    tracker = FaceTracker()
    records, rows, skipped = [], [], []
    with tempfile.TemporaryDirectory(prefix="memface-real-people-") as scratch:
        work_root = Path(args.work or scratch)
        for person, clip in clips:
            work = work_root / person
            work.mkdir(parents=True, exist_ok=True)
            adaptation, test_audio, test_frames, cut = cut_clip(clip, work)
            if np.abs(test_audio).max(initial=0.0) < SILENCE_PEAK:
                skipped.append({"clip": clip.stem, "person": person, "reason": "the test part has no sound"})
                logger.warning("%s (%s): the part after %.1f s is silent; skipped", person, clip.stem, cut)
                continue
            real = video_statistics(test_frames, tracker)
            first = next(i for i, found in enumerate(np.isfinite(real.lip_gaps)) if found)
            track = tracker.track(test_frames[first:first + 1])
            row = {"real": test_frames, "box": face_box(track.landmarks[0], test_frames[0].shape)}
            # reference: the person's own real frames before the cut, as they are (what a generator that
            # showed the adaptation video's mouths exactly would score against the frames after it)
            own = compare_videos(video_statistics(list(iter_frames(adaptation)), tracker), real)
            records.append({"clip": clip.stem, "person": person, "variant": REFERENCE, **own, "adapt_seconds": 0.0,
                            "adaptation_seconds_of_video": round(cut, 2), "test_frames": len(test_frames)})
            for variant in VARIANTS:
                seconds = args.finetune_seconds if variant == "finetune_60s" else 0.0
                if variant == "finetune_60s" and not seconds:
                    continue
                started = time.perf_counter()
                adapt_speaker(adaptation, work / variant, renderer=pipe.renderer if seconds else None,
                              finetune_seconds=seconds or None, progress=False, a2e=pipe.a2e,
                              a2e_finetune_seconds=(args.a2e_finetune_seconds or None) if seconds else None)
                adapt_seconds = time.perf_counter() - started
                output = pipe((test_audio, AUDIO_SAMPLE_RATE), str(work / variant))
                figures = compare_videos(video_statistics(list(output.frames), tracker), real)
                record = {"clip": clip.stem, "person": person, "variant": variant, **figures,
                          "adapt_seconds": round(adapt_seconds, 1), "adaptation_seconds_of_video": round(cut, 2),
                          "test_frames": len(test_frames),
                          "articulation_gain": json.loads((work / variant / "speaker.json").read_text())
                          .get("articulation", {}).get("gain")}
                records.append(record)
                row[variant] = list(output.frames)
                logger.info("%s %s: ΔE %.2f, sharpness ratio %.2f, lip corr %.2f (lag %d)", person, variant,
                            figures["delta_e"], figures["sharpness_ratio"], figures["lip_corr_0"], figures["lip_lag"])
            rows.append(row)
    summary = {}
    for variant in (*VARIANTS, REFERENCE):
        chosen = [r for r in records if r["variant"] == variant]
        if chosen:
            summary[variant] = {"people": len(chosen), **{key: mean(r[key] for r in chosen) for key in SUMMARY_KEYS}}
    out = Path(args.out)
    previous = json.loads(out.read_text()) if out.exists() else {}
    kept = {key: value for key, value in previous.items() if key.startswith(("ablation", "crop_comparison"))}
    result = {**provenance({"pipeline": args.pipeline or "bundled", "renderer": args.renderer, "split": args.split,
                            "finetune_seconds": args.finetune_seconds,
                            "a2e_finetune_seconds": args.a2e_finetune_seconds, "people_file": args.people or "bundled",
                            "memory_detail": pipe.memory_detail,
                            "memory_detail_band": pipe.memory_detail_band, "mouth_region": pipe.mouth_region,
                            "articulation_gain": pipe.articulation}),
              "people": records, "skipped": skipped, "summary": summary, **kept}
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, json.dumps(result, indent=1))
    write_grid(Path(args.grid), rows)
    write_markdown_section(args.readme, "real-people", "Real people (`docs/results/real_people.json`)",
                           markdown_table(result))
    for variant, figures in summary.items():
        logger.info("%s over %d people: ΔE %.2f, sharpness ratio %.2f, lip corr %.2f", variant, figures["people"],
                    figures["delta_e"], figures["sharpness_ratio"], figures["lip_corr_0"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
