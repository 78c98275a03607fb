"""The audio-to-expression ablation on the demo corpus (paper Tab. 3 / Fig. 9 direction).

    python scripts/a2e_ablation.py --corpus outputs/foundation/corpus --shards outputs/foundation/shards

1. front end choice: MemFace with ``phonemes`` and with ``mel`` features (seeds each), picked by
   validation RMSE;
2. with that front end: ``memface``, ``no_memory``, ``explicit_memory``, and ``random_memory``
   (each trained memface model with its memory reset to random values, nothing retrained);
3. a different voice: MemFace trained without one voice, tested on that voice's test clips.

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
from pathlib import Path

import numpy as np

from memface_hub.arrays_io import write_text_atomic
from memface_hub.evaluation.report import write_markdown_section
from memface_hub.a2e import MemFaceAudioToExpression
from memface_hub.evaluation.a2e_eval import evaluate_a2e
from memface_hub.training.a2e_data import read_splits
from memface_hub.training.run_state import STATE_FILE
from memface_hub.training.train_a2e import A2ETrainingConfig, train_a2e

logger = logging.getLogger("a2e_ablation")
ROOT = Path(__file__).resolve().parents[1]
VARIANT_MEMORY = {"memface": "implicit", "no_memory": "none", "explicit_memory": "explicit"}
METRICS = ("rmse", "bilabial_closure", "av_offset_frames", "lag0_fraction", "silence_jitter")


def run(name: str, args, memory: str, frontend: str, seed: int, splits_path: Path) -> Path:
    """Train (or reuse) one model; returns its run folder."""
    out = Path(args.work) / name
    state = out / STATE_FILE
    if state.exists() and json.loads(state.read_text())["epoch"] >= args.epochs and (out / "best").exists():
        return out
    started = time.perf_counter()
    train_a2e(A2ETrainingConfig(
        shards=args.shards, output_dir=str(out), splits=str(splits_path), frontend={"name": frontend},
        memory=memory, memory_slots=args.memory_slots, epochs=args.epochs, d_model=args.d_model,
        seed=seed, resume=state.exists(), progress=False))
    logger.info("%s trained in %.0f s", name, time.perf_counter() - started)
    return out


def summarise(rows: list[dict]) -> dict:
    """Mean ± std over seeds of each metric."""
    summary = {"seeds": len(rows), "test_frames": rows[0]["frames"]}
    for metric in METRICS:
        values = np.array([r[metric] for r in rows], float)
        summary[f"{metric}_mean"] = float(np.nanmean(values))
        summary[f"{metric}_std"] = float(np.nanstd(values))
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
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--memory-slots", type=int, default=1000)
    parser.add_argument("--frontends", default="phonemes,mel")
    parser.add_argument("--heldout-voice", default="en-gb")
    parser.add_argument("--heldout-seeds", type=int, default=1, help="seeds for the unheard-voice runs")
    parser.add_argument("--out", default=str(ROOT / "docs" / "results" / "a2e_ablation.json"))
    parser.add_argument("--readme", default=str(ROOT / "docs" / "results" / "README.md"))
    parser.add_argument("--table-only", action="store_true", help="only rewrite the README table from --out")
    args = parser.parse_args(argv)
    if args.table_only:
        write_results_section(json.loads(Path(args.out).read_text()), args.readme)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("accelerate").setLevel(logging.WARNING)
    corpus = Path(args.corpus)
    index = json.loads((corpus / "corpus.json").read_text())
    splits = read_splits(corpus / "corpus.json")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    seeds = list(range(args.seeds))
    started = time.perf_counter()

    def evaluate(model_dir: Path, clip_ids, reset_seed: int | None = None) -> dict:
        model = MemFaceAudioToExpression.from_pretrained(str(model_dir))
        if reset_seed is not None:
            model.reset_memory_(reset_seed)
        return evaluate_a2e(model, args.shards, corpus, clip_ids)

    # 1. front end choice, by validation RMSE of MemFace
    frontends = args.frontends.split(",")
    choice_rows = {}
    for frontend in frontends:
        rows = []
        for seed in seeds:
            out = run(f"{frontend}_memface_s{seed}", args, "implicit", frontend, seed, corpus / "corpus.json")
            rows.append({"val": evaluate(out / "best", splits["val"]), "test": evaluate(out / "best", splits["test"])})
        choice_rows[frontend] = rows
    chosen = min(frontends, key=lambda f: np.mean([r["val"]["rmse"] for r in choice_rows[f]]))
    logger.info("front end chosen by validation RMSE: %s", chosen)

    # 2. the ablation with the chosen front end
    table = {"memface": [r["test"] for r in choice_rows[chosen]]}
    for variant in ("no_memory", "explicit_memory"):
        table[variant] = [evaluate(run(f"{chosen}_{variant}_s{seed}", args, VARIANT_MEMORY[variant], chosen, seed,
                                       corpus / "corpus.json") / "best", splits["test"]) for seed in seeds]
    table["random_memory"] = [evaluate(work / f"{chosen}_memface_s{seed}" / "best", splits["test"], reset_seed=seed)
                              for seed in seeds]
    states = [json.loads((work / f"{chosen}_memface_s{s}" / STATE_FILE).read_text()) for s in seeds]
    throughput = float(np.mean([s["train_frames_per_s"] for s in states]))

    # 3. an unheard voice: train without it, test on its test clips (vs. the other voices' test clips)
    voice_of = {clip["clip_id"]: clip["voice"] for clip in index["clips"]}
    heldout = {name: [c for c in ids if voice_of[c] != args.heldout_voice] for name, ids in splits.items()}
    heldout_path = work / f"splits_without_{args.heldout_voice}.json"
    heldout_path.write_text(json.dumps({"splits": heldout}))
    voice_rows = {"unheard_voice": [], "heard_voices": []}
    for seed in seeds[:args.heldout_seeds]:
        out = run(f"{chosen}_memface_no-{args.heldout_voice}_s{seed}", args, "implicit", chosen, seed, heldout_path)
        voice_rows["unheard_voice"].append(evaluate(out / "best", [c for c in splits["test"]
                                                                   if voice_of[c] == args.heldout_voice]))
        voice_rows["heard_voices"].append(evaluate(out / "best", heldout["test"]))

    result = {
        "frontend": chosen,
        "train_frames_per_s": throughput,
        "machine": f"{os.cpu_count()} CPU cores, CPU only",
        "epochs": args.epochs,
        "rows": [table_row(variant, rows) for variant, rows in table.items()],
        "frontend_choice": [{"frontend": f, "val_rmse_mean": float(np.mean([r["val"]["rmse"] for r in rows])),
                             **{f"test_{k}".replace("test_test_", "test_"): v
                                for k, v in summarise([r["test"] for r in rows]).items()}}
                            for f, rows in choice_rows.items()],
        "heldout_voice": {"voice": args.heldout_voice,
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


def markdown_table(result: dict) -> str:
    lines = [f"Front end: `{result['frontend']}`; {result['epochs']} epochs; training "
             f"{result['train_frames_per_s']:.0f} frames/s ({result['machine']}).", "",
             "| variant | RMSE ↓ | bilabial closure ↑ | mean abs AV offset (frames) ↓ | lag-0 fraction ↑ | jitter in silence ↓ | seeds | test frames |",
             "|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        lines.append(f"| {row['variant']} | {row['rmse_mean']:.4f} ± {row['rmse_std']:.4f} | "
                     f"{row['bilabial_closure_mean']:.3f} ± {row['bilabial_closure_std']:.3f} | "
                     f"{row['av_offset_frames_mean']:.2f} ± {row['av_offset_frames_std']:.2f} | "
                     f"{row['lag0_fraction_mean']:.2f} | {row['silence_jitter_mean']:.4f} | {row['seeds']} | {row['test_frames']} |")
    lines += ["", "Front-end choice (MemFace, mean over seeds): " + "; ".join(
        f"`{row['frontend']}` val RMSE {row['val_rmse_mean']:.4f}, test RMSE {row['test_rmse_mean']:.4f}, "
        f"bilabial closure {row['test_bilabial_closure_mean']:.3f}" for row in result["frontend_choice"]) + "."]
    heldout = result["heldout_voice"]
    lines += ["", f"Unheard voice (`{heldout['voice']}` left out of training, {heldout['unheard_voice']['seeds']} seed): "
              f"RMSE {heldout['unheard_voice']['rmse_mean']:.4f} and bilabial closure "
              f"{heldout['unheard_voice']['bilabial_closure_mean']:.3f} on its test clips, against "
              f"{heldout['heard_voices']['rmse_mean']:.4f} and {heldout['heard_voices']['bilabial_closure_mean']:.3f} "
              "on the other voices' test clips."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
