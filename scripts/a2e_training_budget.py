"""Does the a2e ablation's picture change with a longer training budget? (seed 0, mel front end)

    python scripts/a2e_training_budget.py            # ~50 minutes on 2 CPU cores (2 runs side by side)

Trains MemFace and the no-memory model for each budget in ``--epochs`` (default 120 and 200 epochs; the
ablation uses 60), and MemFace for 60 epochs without the alternating memory/model updates of supplement B.2,
on the demo corpus built by ``scripts/foundation_figures.py``, evaluates them on the test split beside the
ablation's 60-epoch seed-0 runs when those exist, and writes ``docs/results/a2e_training_budget.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from memface_hub.a2e import MemFaceAudioToExpression
from memface_hub.arrays_io import write_text_atomic
from memface_hub.data.a2e_clips import read_splits
from memface_hub.evaluation.a2e_eval import evaluate_a2e
from memface_hub.evaluation.report import provenance, write_markdown_section
from memface_hub.training.run_state import STATE_FILE
from memface_hub.training.train_a2e import A2ETrainingConfig, train_a2e_many

ROOT = Path(__file__).resolve().parents[1]
MEMORY = {"memface": "implicit", "no_memory": "none"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default=str(ROOT / "outputs" / "foundation" / "corpus"))
    parser.add_argument("--shards", default=str(ROOT / "outputs" / "foundation" / "shards"))
    parser.add_argument("--work", default=str(ROOT / "outputs" / "a2e_budget_v2"))
    parser.add_argument("--ablation-work", default=str(ROOT / "outputs" / "a2e_ablation"),
                        help="the ablation's runs, for its 60-epoch seed-0 models")
    parser.add_argument("--epochs", default="120,200", help="comma-separated budgets for both models")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "docs" / "results" / "a2e_training_budget.json"))
    parser.add_argument("--readme", default=str(ROOT / "docs" / "results" / "README.md"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("accelerate").setLevel(logging.WARNING)
    corpus = Path(args.corpus)
    if not (corpus / "corpus.json").is_file() or not Path(args.shards).is_dir():
        logging.error("%s: no demo corpus with shards (%s); `python scripts/foundation_figures.py` builds both",
                      corpus, args.shards)
        return 2
    test = read_splits(corpus / "corpus.json")["test"]
    budgets = [int(epochs) for epochs in args.epochs.split(",")]
    configs = {f"{variant}_{epochs}_epochs": A2ETrainingConfig(
        shards=args.shards, output_dir=str(Path(args.work) / f"mel_{variant}_{epochs}_epochs"),
        splits=str(corpus / "corpus.json"), frontend={"name": "mel"}, memory=memory, epochs=epochs, seed=0,
        progress=False) for epochs in budgets for variant, memory in MEMORY.items()}
    # MemFace without the alternating schedule (supplement B.2), at the ablation's 60 epochs
    no_alternation = A2ETrainingConfig(
        shards=args.shards, output_dir=str(Path(args.work) / "mel_memface_no_alternation_60_epochs"),
        splits=str(corpus / "corpus.json"), frontend={"name": "mel"}, memory="implicit", epochs=60,
        alternate_fraction=0.0, seed=0, progress=False)
    train_a2e_many([*configs.values(), no_alternation], jobs=args.jobs)
    runs = {name: Path(config.output_dir) for name, config in configs.items()}
    runs["memface_no_alternation_60_epochs"] = Path(no_alternation.output_dir)
    runs.update({f"{variant}_60_epochs": Path(args.ablation_work) / f"mel_{variant}_s0" for variant in MEMORY
                 if (Path(args.ablation_work) / f"mel_{variant}_s0" / "best").is_dir()})
    results = {}
    for name, folder in sorted(runs.items()):
        state = json.loads((folder / STATE_FILE).read_text())
        results[name] = {**evaluate_a2e(MemFaceAudioToExpression.from_pretrained(str(folder / "best")), args.shards,
                                        corpus, test),
                         "epochs": state["epoch"], "train_seconds": state.get("train_seconds")}
        logging.info("%s: %s", name, json.dumps(results[name]))
    result = {**provenance(dict(vars(args))), "seed": 0, "frontend": "mel", "runs": results}
    write_text_atomic(Path(args.out), json.dumps(result, indent=1) + "\n")
    table = markdown_table(results)
    write_markdown_section(args.readme, "a2e-budget", "Audio-to-expression training budget", table)
    print(table)
    return 0


def markdown_table(results: dict) -> str:
    lines = ["| run (mel, seed 0) | RMSE ↓ | bilabial closure ↑ | mean abs AV offset (frames) ↓ | jitter in silence ↓ |"
             " training (min) |", "|---|---|---|---|---|---|"]
    for name, row in sorted(results.items(), key=lambda item: (item[1]["epochs"], item[0])):
        minutes = f"{row['train_seconds'] / 60:.1f}" if row.get("train_seconds") else "–"
        lines.append(f"| {name.replace('_', ' ')} | {row['rmse']:.4f} | {row['bilabial_closure']:.3f} | "
                     f"{row['av_offset_frames']:.2f} | {row['silence_jitter']:.4f} | {minutes} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
