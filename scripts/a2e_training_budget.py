"""Does the a2e ablation's direction depend on the training budget? (single seed, mel front end)

    python scripts/a2e_training_budget.py     # ~12 minutes on 2 CPU cores

Trains MemFace without the alternating schedule (20 epochs), and MemFace and the no-memory model
for 60 epochs, on the demo corpus built by ``scripts/foundation_figures.py``; evaluates each on
the test split; writes ``docs/results/a2e_training_budget.json``.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from memface_hub.arrays_io import write_text_atomic
from memface_hub.a2e import MemFaceAudioToExpression
from memface_hub.evaluation.a2e_eval import evaluate_a2e
from memface_hub.training.a2e_data import read_splits
from memface_hub.training.train_a2e import A2ETrainingConfig, train_a2e

ROOT = Path(__file__).resolve().parents[1]
RUNS = (  # name, memory, epochs, alternate_fraction
    ("memface_no_alternation_20_epochs", "implicit", 20, 0.0),
    ("memface_60_epochs", "implicit", 60, 0.5),
    ("no_memory_60_epochs", "none", 60, 0.5),
)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("accelerate").setLevel(logging.WARNING)
    corpus, shards = ROOT / "outputs" / "foundation" / "corpus", ROOT / "outputs" / "foundation" / "shards"
    test = read_splits(corpus / "corpus.json")["test"]
    results = {}
    for name, memory, epochs, alternate in RUNS:
        best = train_a2e(A2ETrainingConfig(
            shards=str(shards), output_dir=str(ROOT / "outputs" / "a2e_budget" / name), splits=str(corpus / "corpus.json"),
            frontend={"name": "mel"}, memory=memory, epochs=epochs, alternate_fraction=alternate, seed=0,
            progress=False))
        results[name] = evaluate_a2e(MemFaceAudioToExpression.from_pretrained(str(best)), shards, corpus, test)
        print(name, json.dumps(results[name]), flush=True)
    out = ROOT / "docs" / "results" / "a2e_training_budget.json"
    write_text_atomic(out, json.dumps({"seed": 0, "frontend": "mel", "runs": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
