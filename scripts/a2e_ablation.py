"""The audio-to-expression ablation on the demo corpus (paper Tab. 3 / Fig. 9 direction).

    python scripts/a2e_ablation.py --corpus outputs/foundation/corpus --shards outputs/foundation/shards

1. front end choice: MemFace with ``phonemes`` and with ``mel`` features (seeds each), picked by
   validation RMSE;
2. with that front end: ``memface``, ``no_memory``, ``explicit_memory``, and ``random_memory``
   (each trained memface model with its memory reset to random values, nothing retrained);
3. a different voice: MemFace trained without one voice, tested on that voice's test clips.

On a multi-person corpus (``memface build-corpus``, speaking styles: demo corpus v3 on many faces) the
model trains on its ``a2e_splits`` (``--real-repeat`` for the real clips), the table is measured on the
synthetic test clips, and the unheard voice and unseen faces need no extra training: the corpus already
holds them out (``test_voice``, ``test_face``; ``test_sentence`` for the seen voices and faces)::

    python scripts/a2e_ablation.py --corpus ../data/corpus --shards ../data/corpus/shards --frontends mel \
        --epochs 150 --real-repeat 3 --jobs 2 --work ../runs/a2e_ablation_v3

Every run is resumable (a finished run is reused). Writes ``docs/results/a2e_ablation.json`` and
the table in ``docs/results/README.md`` (between markers), and prints the table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from memface_hub.a2e import MemFaceAudioToExpression
from memface_hub.arrays_io import write_text_atomic
from memface_hub.data.a2e_clips import read_splits
from memface_hub.data.visemes import BILABIALS
from memface_hub.evaluation.a2e_eval import clip_timeline, evaluate_a2e, predict_clip_vertices
from memface_hub.evaluation.a2e_metrics import centre_frames
from memface_hub.evaluation.report import STD_CONVENTION, format_mean_std, mean_std, provenance, write_markdown_section
from memface_hub.face.geometry import mouth_opening
from memface_hub.io.shards import load_shard
from memface_hub.training.run_state import STATE_FILE
from memface_hub.training.train_a2e import A2ETrainingConfig, train_a2e_many

logger = logging.getLogger("a2e_ablation")
ROOT = Path(__file__).resolve().parents[1]
VARIANT_MEMORY = {"memface": "implicit", "no_memory": "none", "explicit_memory": "explicit"}
METRICS = ("rmse", "bilabial_closure", "av_offset_frames", "lag0_fraction", "silence_jitter",
           "bilabial_closure_ground_truth")


@dataclass(frozen=True)
class RunSpec:
    """One training run of the ablation."""

    name: str
    memory: str
    frontend: str
    seed: int
    splits: str


def train_all(specs: list[RunSpec], args) -> None:
    """Train every run not yet done (``--jobs`` at once, one thread each)."""
    train_a2e_many([A2ETrainingConfig(
        shards=args.shards, output_dir=str(Path(args.work) / spec.name), splits=spec.splits,
        frontend={"name": spec.frontend}, memory=spec.memory, memory_slots=args.memory_slots, epochs=args.epochs,
        d_model=args.d_model, seed=spec.seed, real_repeat=args.real_repeat, progress=False) for spec in specs],
        jobs=args.jobs)


PLOT_COLOURS = {"ground truth": (40, 40, 40), "memface": (30, 60, 200), "no_memory": (220, 120, 40),
                "random_memory": (60, 170, 60)}  # BGR


def plot_mouth_opening(path: Path, curves: dict[str, np.ndarray], bilabial_frames: np.ndarray, title: str,
                       fps: float = 25.0) -> None:
    """A small line chart (cv2, no plotting dependency): mouth opening ``(T,)`` per curve over time,
    with grey bars at the m/b/p centres where the lips should be shut."""
    width, height, left, right, top_margin, bottom_margin = 900, 320, 40, 20, 70, 30
    frames = max(len(c) for c in curves.values())
    top = max(float(c.max()) for c in curves.values()) * 1.05
    canvas = np.full((height, width, 3), 255, np.uint8)
    font, grey = cv2.FONT_HERSHEY_SIMPLEX, (80, 80, 80)

    def point(t: float, value: float) -> tuple[int, int]:
        return (int(left + t / max(frames - 1, 1) * (width - left - right)),
                int(height - bottom_margin - value / top * (height - top_margin - bottom_margin)))

    for frame in bilabial_frames:
        x = point(frame, 0)[0]
        cv2.rectangle(canvas, (x - 3, top_margin), (x + 3, height - bottom_margin), (215, 215, 215), -1)
    cv2.rectangle(canvas, (left, top_margin), (width - right, height - bottom_margin), (120, 120, 120), 1)
    for second in range(int(frames / fps) + 1):
        x = point(second * fps, 0)[0]
        cv2.putText(canvas, f"{second}s", (x - 8, height - bottom_margin + 18), font, 0.4, grey, 1, cv2.LINE_AA)
    legend_x = left
    for label, curve in curves.items():
        colour = PLOT_COLOURS.get(label, (0, 0, 0))
        thickness = 2 if label == "ground truth" else 1
        points = np.array([point(t, v) for t, v in enumerate(curve)], np.int32)
        cv2.polylines(canvas, [points], False, colour, thickness, cv2.LINE_AA)
        cv2.line(canvas, (legend_x, top_margin - 14), (legend_x + 24, top_margin - 14), colour, thickness + 1)
        cv2.putText(canvas, label, (legend_x + 30, top_margin - 10), font, 0.45, colour, 1, cv2.LINE_AA)
        legend_x += 40 + cv2.getTextSize(label, font, 0.45, 1)[0][0]
    cv2.putText(canvas, "grey bars: m/b/p centres (lips should be shut)", (legend_x + 10, top_margin - 10), font, 0.4,
                grey, 1, cv2.LINE_AA)
    cv2.putText(canvas, title, (left, 22), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp.png")
    if not cv2.imwrite(str(temporary), canvas):
        raise OSError(f"could not write {path}")
    os.replace(temporary, path)


def write_opening_figure(path: Path, work: Path, args, chosen: str, clip_id: str, corpus: Path) -> None:
    """Ground truth vs MemFace, w/o memory and random memory (seed 0 each) on one test clip."""
    shard = load_shard(Path(args.shards) / clip_id)
    timeline = clip_timeline(corpus, clip_id)
    curves = {"ground truth": mouth_opening(shard.mouth_vertices)}
    for label, run_name, reset in (("random_memory", "memface", True), ("no_memory", "no_memory", False),
                                   ("memface", "memface", False)):                      # MemFace drawn last, on top
        model = MemFaceAudioToExpression.from_pretrained(str(work / f"{chosen}_{run_name}_s0" / "best"))
        if reset:
            model.reset_memory_(0)
        curves[label] = mouth_opening(predict_clip_vertices(model.eval(), shard))
    bilabials = centre_frames(timeline["phonemes"], BILABIALS, timeline["fps"], shard.num_frames)
    plot_mouth_opening(path, curves, bilabials, f'test clip "{timeline["text"]}" ({timeline["voice"]}, '
                                                f'{timeline["rate"]} wpm), mouth opening')


def summarise(rows: list[dict]) -> dict:
    """Mean ± sample std (ddof=1, :func:`~memface_hub.evaluation.report.mean_std`) over seeds of each metric."""
    summary = {"seeds": len(rows), "test_frames": rows[0]["frames"], "bilabials": rows[0].get("bilabials")}
    for metric in METRICS:
        summary[f"{metric}_mean"], summary[f"{metric}_std"] = mean_std(r[metric] for r in rows)
    return summary


def table_row(variant: str, rows: list[dict]) -> dict:
    """One row of the JSON table: the issue's keys plus every metric's mean and std."""
    summary = summarise(rows)
    return {"variant": variant, "rmse_mean": summary["rmse_mean"], "rmse_std": summary["rmse_std"],
            "bilabial_closure": summary["bilabial_closure_mean"], "av_offset_frames": summary["av_offset_frames_mean"],
            **summary}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default=str(ROOT / "outputs" / "foundation" / "corpus"))
    parser.add_argument("--shards", default=str(ROOT / "outputs" / "foundation" / "shards"))
    parser.add_argument("--work", default=str(ROOT / "outputs" / "a2e_ablation"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--jobs", type=int, default=1, help="training runs at once, one thread each")
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--memory-slots", type=int, default=1000)
    parser.add_argument("--frontends", default="phonemes,mel")
    parser.add_argument("--real-repeat", type=int, default=1,
                        help="a multi-person corpus's real clips count this often (default: 1)")
    parser.add_argument("--heldout-voice", default="en-gb", help="demo corpus: the voice one run is trained without")
    parser.add_argument("--heldout-seeds", type=int, default=1, help="seeds for the unheard-voice runs")
    parser.add_argument("--out", default=str(ROOT / "docs" / "results" / "a2e_ablation.json"))
    parser.add_argument("--readme", default=str(ROOT / "docs" / "results" / "README.md"))
    parser.add_argument("--figure", default=str(ROOT / "docs" / "a2e_mouth_opening.png"))
    parser.add_argument("--figure-clip", default=None, help="test clip to plot (default: the one with most m/b/p)")
    parser.add_argument("--table-only", action="store_true", help="only rewrite the README table from --out")
    args = parser.parse_args(argv)
    if args.table_only:
        write_results_section(json.loads(Path(args.out).read_text()), args.readme)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("accelerate").setLevel(logging.WARNING)
    corpus = Path(args.corpus)
    if not (corpus / "corpus.json").is_file() or not Path(args.shards).is_dir():
        logger.error("%s: no demo corpus with shards (%s); `python scripts/foundation_figures.py` builds both",
                     corpus, args.shards)
        return 2
    index = json.loads((corpus / "corpus.json").read_text())
    multi_person = "a2e_splits" in index
    splits = read_splits(corpus / "corpus.json", key="a2e_splits")
    if multi_person:      # measured where a timeline gives the truth: the synthetic clips
        synthetic = {c for c, info in index["clips"].items() if info["source"] == "synthetic"}
        splits = {name: [c for c in ids if c in synthetic] for name, ids in splits.items()}
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    seeds = list(range(args.seeds))
    started = time.perf_counter()

    def evaluate(model_dir: Path, clip_ids, reset_seed: int | None = None) -> dict:
        model = MemFaceAudioToExpression.from_pretrained(str(model_dir))
        if reset_seed is not None:
            model.reset_memory_(reset_seed)
        return evaluate_a2e(model, args.shards, corpus, clip_ids)

    # 0. every training run, planned up front so that --jobs can train them side by side
    frontends = args.frontends.split(",")
    if multi_person:
        voice_of = {c: info.get("voice") for c, info in index["clips"].items()}
        heldout = {"test": splits["test_sentence"]}
        unheard = {"voice": ", ".join(sorted({voice_of[c] for c in splits["test_voice"]})),
                   "clips": splits["test_voice"]}
    else:
        voice_of = {clip["clip_id"]: clip["voice"] for clip in index["clips"]}
        heldout = {name: [c for c in ids if voice_of[c] != args.heldout_voice] for name, ids in splits.items()}
        unheard = {"voice": args.heldout_voice,
                   "clips": [c for c in splits["test"] if voice_of[c] == args.heldout_voice]}
        heldout_path = work / f"splits_without_{args.heldout_voice}.json"
        write_text_atomic(heldout_path, json.dumps({"splits": heldout}))
    corpus_splits = str(corpus / "corpus.json")
    memface_runs = {f: [RunSpec(f"{f}_memface_s{seed}", "implicit", f, seed, corpus_splits) for seed in seeds]
                    for f in frontends}
    specs = [spec for runs in zip(*memface_runs.values()) for spec in runs]
    train_all(specs, args)

    # 1. front end choice, by validation RMSE of MemFace
    choice_rows = {}
    for frontend in frontends:
        choice_rows[frontend] = []
        for spec in memface_runs[frontend]:
            model = MemFaceAudioToExpression.from_pretrained(str(work / spec.name / "best"))
            choice_rows[frontend].append({split: evaluate_a2e(model, args.shards, corpus, splits[split])
                                          for split in ("val", "test")})
    chosen = min(frontends, key=lambda f: np.mean([r["val"]["rmse"] for r in choice_rows[f]]))
    logger.info("front end chosen by validation RMSE: %s", chosen)

    # 2. the ablation with the chosen front end, and an unheard voice (trained without it)
    ablation_runs = {variant: [RunSpec(f"{chosen}_{variant}_s{seed}", VARIANT_MEMORY[variant], chosen, seed,
                                       corpus_splits) for seed in seeds]
                     for variant in ("no_memory", "explicit_memory")}
    voice_runs = [] if multi_person else [
        RunSpec(f"{chosen}_memface_no-{args.heldout_voice}_s{seed}", "implicit", chosen, seed, str(heldout_path))
        for seed in seeds[:args.heldout_seeds]]
    train_all([spec for runs in ablation_runs.values() for spec in runs] + voice_runs, args)
    table = {"memface": [r["test"] for r in choice_rows[chosen]]}
    for variant, runs in ablation_runs.items():
        table[variant] = [evaluate(work / spec.name / "best", splits["test"]) for spec in runs]
    table["random_memory"] = [evaluate(work / spec.name / "best", splits["test"], reset_seed=spec.seed)
                              for spec in memface_runs[chosen]]
    states = [json.loads((work / spec.name / STATE_FILE).read_text()) for spec in memface_runs[chosen]]
    throughput = float(np.mean([s["train_frames_per_s"] for s in states]))
    run_seconds = float(np.mean([s.get("train_seconds", float("nan")) for s in states]))

    # 3. an unheard voice: its test clips against the other voices' test clips (and, on a multi-person
    #    corpus, unseen faces), each measured with the runs that never heard it
    voice_rows = {"unheard_voice": [], "heard_voices": []}
    for spec in voice_runs or memface_runs[chosen]:
        voice_rows["unheard_voice"].append(evaluate(work / spec.name / "best", unheard["clips"]))
        voice_rows["heard_voices"].append(evaluate(work / spec.name / "best", heldout["test"]))
    if multi_person:
        voice_rows["unseen_faces"] = [evaluate(work / spec.name / "best", splits["test_face"])
                                      for spec in memface_runs[chosen]]

    # 4. a picture: ground truth vs the variants on the test clip with the most m/b/p
    def bilabial_count(clip_id: str) -> int:
        timeline = clip_timeline(corpus, clip_id)
        return len(centre_frames(timeline["phonemes"], BILABIALS, timeline["fps"], timeline["num_frames"]))

    figure_clip = args.figure_clip or max(splits["test"], key=bilabial_count)
    write_opening_figure(Path(args.figure), work, args, chosen, figure_clip, corpus)

    result = {
        **provenance({key: value for key, value in vars(args).items() if key != "table_only"}),
        "std": STD_CONVENTION,
        "frontend": chosen,
        "figure_clip": figure_clip,
        "train_frames_per_s": throughput,
        "machine": f"{os.cpu_count()} CPU cores, CPU only",
        "train_threads": 1 if args.jobs > 1 else torch.get_num_threads(),
        "parallel_runs": args.jobs,
        "train_seconds_per_run": run_seconds,
        "corpus_version": index.get("format_version", 1),
        "corpus": ("multi-person corpus v2 (synthetic faces in drawn speaking styles, demo corpus v3; real clips)"
                   if multi_person else f"demo corpus v{index.get('format_version', 1)}"),
        "epochs": args.epochs,
        "rows": [table_row(variant, rows) for variant, rows in table.items()],
        "frontend_choice": [{"frontend": f, "val_rmse_mean": float(np.mean([r["val"]["rmse"] for r in rows])),
                             **{f"test_{k}".replace("test_test_", "test_"): v
                                for k, v in summarise([r["test"] for r in rows]).items()}}
                            for f, rows in choice_rows.items()],
        "heldout_voice": {"voice": unheard["voice"],
                          **{name: summarise(rows) for name, rows in voice_rows.items()}},
        "wall_seconds": time.perf_counter() - started,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, json.dumps(result, indent=1) + "\n")
    write_results_section(result, args.readme)
    print(markdown_table(result))
    return 0


def write_results_section(result: dict, readme) -> None:
    write_markdown_section(readme, "a2e-ablation", "Audio-to-expression ablation (`docs/results/a2e_ablation.json`)",
                           markdown_table(result))


def cell(row: dict, metric: str, digits: int) -> str:
    """One table cell: the metric's mean ± sample std over seeds (no ± for one seed)."""
    return format_mean_std(row[f"{metric}_mean"], row[f"{metric}_std"], digits)


def markdown_table(result: dict) -> str:
    setting = result["machine"]
    if result.get("train_threads"):
        setting = (f"{result['train_threads']} torch thread(s) per run, {result['parallel_runs']} run(s) at once, "
                   f"{result['train_seconds_per_run'] / 60:.1f} min of training per run; {setting}")
    corpus = result.get("corpus") or f"Demo corpus v{result.get('corpus_version', 1)}"
    lines = [f"{corpus[0].upper()}{corpus[1:]}. Front end: `{result['frontend']}`; {result['epochs']} "
             f"epochs; training {result['train_frames_per_s']:.0f} frames/s per run ({setting}). "
             "Mean ± sample standard deviation (ddof=1) over seeds.", "",
             "| variant | RMSE ↓ | bilabial closure ↑ | mean abs AV offset (frames) ↓ | lag-0 fraction ↑ "
             "| jitter in silence ↓ | seeds | test frames |",
             "|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        lines.append(f"| {row['variant']} | {cell(row, 'rmse', 4)} | {cell(row, 'bilabial_closure', 3)} | "
                     f"{cell(row, 'av_offset_frames', 2)} | "
                     f"{row['lag0_fraction_mean']:.2f} | {row['silence_jitter_mean']:.4f} | {row['seeds']} | "
                     f"{row['test_frames']} |")
    memface = result["rows"][0]
    if memface.get("bilabial_closure_ground_truth_mean") is not None:
        lines += ["", f"Bilabial closure of the ground truth itself, by the same rule: "
                      f"{memface['bilabial_closure_ground_truth_mean']:.3f} ({memface['bilabials']} m/b/p centres "
                      "in the test split)."]
    lines += ["", "Front-end choice (MemFace, mean over seeds): " + "; ".join(
        f"`{row['frontend']}` val RMSE {row['val_rmse_mean']:.4f}, test RMSE {row['test_rmse_mean']:.4f}, "
        f"bilabial closure {row['test_bilabial_closure_mean']:.3f}" for row in result["frontend_choice"]) + "."]
    heldout = result["heldout_voice"]
    lines += ["", f"Unheard voice (`{heldout['voice']}` left out of training, "
                  f"{heldout['unheard_voice']['seeds']} seed(s)): "
              f"RMSE {heldout['unheard_voice']['rmse_mean']:.4f} and bilabial closure "
              f"{heldout['unheard_voice']['bilabial_closure_mean']:.3f} on its test clips, against "
              f"{heldout['heard_voices']['rmse_mean']:.4f} and {heldout['heard_voices']['bilabial_closure_mean']:.3f} "
              "on the other voices' test clips."]
    if "unseen_faces" in heldout:
        lines[-1] += (f" Unseen faces (test people's portraits, training voices): RMSE "
                      f"{heldout['unseen_faces']['rmse_mean']:.4f}, bilabial closure "
                      f"{heldout['unseen_faces']['bilabial_closure_mean']:.3f}.")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
