"""The renderer ablation on held-out real people (paper Tab. 4 / Fig. 10 direction), one command.

    python scripts/real_renderer_ablation.py --corpus ../data/corpus --steps 600 --seeds 3

1. train ``memface`` (explicit memory), ``no_memory`` and ``implicit_memory`` renderers on the
   multi-person corpus (``memface build-corpus``), each with several seeds, the same budget, the
   same warm start (the layers the variants share), person-balanced batches; resumable;
2. on each held-out (test) real person: the memory is built from the part of their clip before
   ``c = min(15 s, 0.7 × length)`` (the real-people protocol), the renderer redraws the frames after
   ``c`` from their tracked mouth vertices (so the figures measure rendering alone); ``other_speaker_memory``
   gives the memface renderers the memory of another held-out person;
3. mean ± sample standard deviation (ddof 1) over seeds of PSNR/SSIM on the mouth box, the
   EfficientNet-Lite0 ``perceptual`` distance, LMD and the sharpness ratio, pooled over people.

Writes the ``ablation`` rows of ``docs/results/real_people.json`` (other keys are kept).

With ``--compare DIR [DIR ...]`` nothing is trained: the given renderers (e.g. the bundled crop-256 one and a
crop-128 one) are measured the same way, at one resolution (the corpus's crop, 256: smaller crops are
upscaled), and written as ``crop_comparison`` rows.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch

from memface_hub.arrays_io import write_text_atomic
from memface_hub.data.renderer_frames import RendererFrames
from memface_hub.evaluation.perceptual import PerceptualMetric
from memface_hub.evaluation.real_people import adaptation_cut
from memface_hub.evaluation.renderer_eval import evaluate_renderer, track_crops
from memface_hub.evaluation.report import STD_CONVENTION, format_mean_std, mean_std, provenance, write_markdown_section
from memface_hub.face.tracker import FaceTracker
from memface_hub.io.video import DEFAULT_FPS
from memface_hub.renderer import MemFaceRenderer
from memface_hub.training.run_state import STATE_FILE
from memface_hub.training.train_renderer import RendererTrainingConfig, load_renderer_data, train_renderer

logger = logging.getLogger("real_renderer_ablation")
ROOT = Path(__file__).resolve().parents[1]
TRAINED_VARIANTS = {"memface": "explicit", "no_memory": "none", "implicit_memory": "implicit"}
METRICS = ("perceptual", "lmd", "psnr_mouth", "ssim_mouth", "sharpness_ratio")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", required=True, help="a multi-person corpus folder (memface build-corpus)")
    parser.add_argument("--runs", default="outputs/real_renderer_ablation", help="training runs (resumable)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=600, help="training batches per run")
    parser.add_argument("--init-from", default=str(ROOT / "memface_hub/assets/demo_pipeline/renderer"),
                        help="warm start of every run (shared layers)")
    parser.add_argument("--mixed-precision", default="bf16", choices=["no", "bf16"])
    parser.add_argument("--test-frame-step", type=int, default=2)
    parser.add_argument("--compare", nargs="+", default=None, metavar="RENDERER",
                        help="train nothing: measure these renderer folders at the corpus's crop size")
    parser.add_argument("--out", default=str(ROOT / "docs/results/real_people.json"))
    parser.add_argument("--readme", default=str(ROOT / "docs/results/README.md"), help="results page to update")
    return parser.parse_args(argv)


ARCHITECTURE = ("crop_size", "base_channels", "depth", "colour_normalise", "mouth_window", "memory_distance_prior",
                "memory_top_k", "feather", "ring_width")       # taken from the warm start, so the variants are it


def train_all(args, corpus: Path) -> dict[str, list[Path]]:
    start = json.loads((Path(args.init_from) / "config.json").read_text())
    architecture = {key: start[key] for key in ARCHITECTURE if key in start}
    base = RendererTrainingConfig(shards=str(corpus / "shards"), output_dir="", splits=str(corpus / "corpus.json"),
                                  max_steps=args.steps, epochs=10**6, init_from=args.init_from,
                                  mixed_precision=args.mixed_precision, progress=False, **architecture)
    data, best = None, {}
    for variant, memory in TRAINED_VARIANTS.items():
        for seed in range(args.seeds):
            out = Path(args.runs) / f"{variant}_s{seed}"
            state = out / STATE_FILE
            if not (state.exists() and json.loads(state.read_text()).get("step", 0) >= args.steps):
                data = data or load_renderer_data(base, progress=True)
                logger.info("training %s seed %d for %d steps", variant, seed, args.steps)
                train_renderer(RendererTrainingConfig(**{**base.__dict__, "output_dir": str(out), "memory": memory,
                                                         "seed": seed, "resume": state.exists()}), data)
            best.setdefault(variant, []).append(out / "best")
    return best


def compare(args, corpus: Path) -> int:
    """``--compare``: each renderer on the held-out people, measured at the corpus's crop size."""
    index = json.loads((corpus / "corpus.json").read_text())
    first = next(clip for clip in index["splits"]["test"] if index["clips"][clip]["source"] == "real")
    size = json.loads((corpus / "shards" / first / "meta.json").read_text())["crop_layout"]["size"]
    reference = test_people(corpus, size, args.test_frame_step)
    names = sorted(reference)
    perceptual, tracker = PerceptualMetric(), FaceTracker()
    truths = {name: track_crops(reference[name][1].crops, tracker) for name in names}
    rows = []
    for folder in args.compare:
        renderer = MemFaceRenderer.from_pretrained(folder)
        people = test_people(corpus, renderer.crop_size, args.test_frame_step) if renderer.crop_size != size \
            else reference
        results = evaluate_people(renderer, people, names, perceptual, tracker, truths, reference=reference)
        rows.append({"renderer": str(folder), "crop_size": renderer.crop_size, **pooled(results)})
        logger.info("%s (crop %d): %s", folder, renderer.crop_size, rows[-1])
    out = Path(args.out)
    result = json.loads(out.read_text()) if out.exists() else {"people": [], "summary": {}}
    result["crop_comparison"] = rows
    result["crop_comparison_provenance"] = provenance({"renderers": args.compare, "people": names, "measured_at": size,
                                                       "test_frame_step": args.test_frame_step})
    write_text_atomic(out, json.dumps(result, indent=1))
    origin = result["crop_comparison_provenance"]
    lines = [f"`{origin['command']}` at `{origin['git_commit']}`: held-out people {', '.join(names)}; memory from "
             f"the part before the cut, frames after it redrawn from their tracked mouth; measured on the mouth box "
             f"at crop {size} (smaller crops upscaled).", "",
             "| renderer | crop | perceptual ↓ | LMD (px @256) ↓ | PSNR mouth ↑ | SSIM mouth ↑ | sharpness ratio "
             "| frames |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| `{Path(row['renderer']).as_posix()}` | {row['crop_size']} | {row['perceptual']:.3f} | "
                     f"{row['lmd']:.2f} | {row['psnr_mouth']:.2f} | {row['ssim_mouth']:.3f} | "
                     f"{row['sharpness_ratio']:.2f} | {row['frames']} |")
    write_markdown_section(args.readme, "crop-comparison", "Renderer crop sizes on held-out real people "
                           "(`docs/results/real_people.json`, `crop_comparison`)", "\n".join(lines))
    return 0


@torch.inference_mode()
def evaluate_people(renderer: MemFaceRenderer, people: dict[str, tuple], names: list[str], perceptual, tracker,
                    truths: dict, memory_of=lambda name: name, reference: dict[str, tuple] | None = None) -> list[dict]:
    """:func:`evaluate_renderer` on each held-out person's frames after the cut, reading the memory of
    ``memory_of(name)`` (their own by default), against ``reference``'s frames when given (another crop size)."""
    results = []
    for name in names:
        bank = people[memory_of(name)][0].bank
        results.append(evaluate_renderer(renderer, people[name][1], renderer.speaker_memory_inputs(bank.keys,
                                                                                                   bank.patches),
                                         perceptual, tracker, truths[name],
                                         reference=reference[name][1] if reference else None))
    return results


def test_people(corpus: Path, crop_size: int, frame_step: int) -> dict[str, tuple]:
    """Held-out real person → (memory frames before c, test frames after c) of their first real clip."""
    index = json.loads((corpus / "corpus.json").read_text())
    people = {}
    for clip_id in index["splits"]["test"]:
        info = index["clips"][clip_id]
        if info["source"] != "real" or info["person"] in people:
            continue
        frames = RendererFrames([corpus / "shards" / clip_id], crop_size, frame_step=1)
        cut = adaptation_cut(info["frames"], DEFAULT_FPS)
        before, after = frames.split_at(cut)
        after = after.take(np.arange(0, len(after), frame_step))
        before.build_memory(300)
        people[info["person"]] = (before, after)
    return people


def summarise(per_seed: list[dict], variant: str) -> dict:
    """Mean ± sample std (ddof=1, :func:`~memface_hub.evaluation.report.mean_std`) over seeds of each metric."""
    row = {"variant": variant, "seeds": len(per_seed)}
    for metric in METRICS:
        row[metric], row[f"{metric}_std"] = mean_std(r[metric] for r in per_seed)
    row["test_frames"] = per_seed[0]["frames"]
    return row


def pooled(results: list[dict]) -> dict:
    """Metrics of several people, weighted by their frame counts."""
    frames = np.array([r["frames"] for r in results], float)
    return {**{m: float(np.nansum([r[m] * f for r, f in zip(results, frames)]) / frames.sum()) for m in METRICS},
            "frames": int(frames.sum())}


def markdown_table(rows: list[dict], origin: dict) -> str:
    """The ablation rows as the results page's table (mean ± sample std over seeds)."""
    config = origin["config"]
    lines = [f"`{origin['command']}` at `{origin['git_commit']}`: {config['steps']} steps per run, crop "
             f"{config['crop_size']}, warm start from `{Path(config['init_from']).name}` of the bundled pipeline, an "
             "explicit-memory renderer (the layers the variants share: memface continues it whole, the other "
             "variants start their memory layers fresh, which favours memface at a short budget), "
             f"held-out people {', '.join(config['people'])}; memory from the part before the cut, frames after it "
             "redrawn from their tracked mouth.", "",
             "| variant | perceptual ↓ | LMD (px @256) ↓ | PSNR mouth ↑ | SSIM mouth ↑ | sharpness ratio "
             "| seeds | frames |",
             "|---|---|---|---|---|---|---|---|"]
    cell = lambda row, key, digits: format_mean_std(row[key], row[key + "_std"], digits)  # noqa: E731
    for row in rows:
        lines.append(f"| {row['variant']} | {cell(row, 'perceptual', 3)} | {cell(row, 'lmd', 2)} | "
                     f"{cell(row, 'psnr_mouth', 2)} | {cell(row, 'ssim_mouth', 3)} | "
                     f"{cell(row, 'sharpness_ratio', 2)} | "
                     f"{row['seeds']} | {row['test_frames']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    corpus = Path(args.corpus)
    if not (corpus / "corpus.json").is_file():
        logger.error("%s: not a corpus folder (build one with `memface build-corpus --real ../shared/real_clips "
                     "--portraits ../shared/portraits --out %s`)", corpus, corpus)
        return 2
    if args.compare:
        return compare(args, corpus)
    best = train_all(args, corpus)
    crop_size = MemFaceRenderer.from_pretrained(best["memface"][0]).crop_size
    people = test_people(corpus, crop_size, args.test_frame_step)
    names = sorted(people)
    perceptual, tracker = PerceptualMetric(), FaceTracker()
    truths = {name: track_crops(people[name][1].crops, tracker) for name in names}
    per_variant: dict[str, list[dict]] = {}
    for variant, folders in best.items():
        for folder in folders:
            renderer = MemFaceRenderer.from_pretrained(folder)
            reads = [(variant, lambda name: name)]
            if variant == "memface":
                reads.append(("other_speaker_memory", lambda name: names[(names.index(name) + 1) % len(names)]))
            for label, memory_of in reads:
                results = evaluate_people(renderer, people, names, perceptual, tracker, truths, memory_of)
                per_variant.setdefault(label, []).append(pooled(results))
                logger.info("%s (%s): %s", label, folder, per_variant[label][-1])
    rows = [summarise(per_variant[v], v) for v in ("memface", "no_memory", "implicit_memory", "other_speaker_memory")]
    out = Path(args.out)
    result = json.loads(out.read_text()) if out.exists() else {"people": [], "summary": {}}
    result["ablation"] = rows
    result["ablation_provenance"] = provenance({"steps": args.steps, "seeds": args.seeds, "init_from": args.init_from,
                                                "mixed_precision": args.mixed_precision, "people": names,
                                                "test_frame_step": args.test_frame_step, "crop_size": crop_size,
                                                "std": STD_CONVENTION})
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, json.dumps(result, indent=1))
    write_markdown_section(args.readme, "real-renderer-ablation",
                           "Renderer ablation on held-out real people (`docs/results/real_people.json`, `ablation`)",
                           markdown_table(rows, result["ablation_provenance"]))
    for row in rows:
        logger.info("%-22s perceptual %.3f  LMD %.2f  PSNR %.2f  (%d seeds, %d frames)", row["variant"],
                    row["perceptual"], row["lmd"], row["psnr_mouth"], row["seeds"], row["test_frames"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
