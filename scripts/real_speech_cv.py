"""Cross-validated lip-sync on real speech: every real person with speech is held out once.

    python scripts/real_speech_cv.py --corpus ../data/corpus_v3 --folds 4 --work runs/real_speech_cv --jobs 2

``real_speech_eval.py`` scores the 5 test people's clips only, and its figure moves by ±0.1 with the
training seed. Here the real people of a multi-person corpus (``memface build-corpus``) whose clips have
speech are dealt into ``--folds`` folds, by person (seeded, balanced by clip count). Each fold trains one
a2e model with the bundled recipe (``--epochs``, ``--real-repeat``, ``--real-augment``, ``--seed``) on the
synthetic training clips and **every other** real person's clips, picks its best epoch on the synthetic
validation clips, and scores the fold's clips exactly as ``real_speech_eval.py`` does: the whole clip and
the test part after ``c``, lip correlation at lag 0, best lag, loudness baseline.

The baseline (``--no-baseline``: none) shows what the real clips buy: the same recipe trained on the
synthetic clips alone, one model that scores every fold (``without_real`` in the JSON).

Training runs are resumable across sessions: finished runs are skipped, interrupted ones resumed
(``<work>/fold_<k>`` and ``<work>/synthetic_only``; ``<work>/<run>.json`` is its split, a copy of
``corpus.json`` with its ``a2e_splits`` replaced). Writes ``--out`` (default
``docs/results/real_speech_cv.json``) with the commit, command and config. Only shards are read; nothing
from the clips is written into the repository.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
from pathlib import Path

import numpy as np
from real_speech_eval import evaluate_clip, has_speech, save_figure, summarise

from memface_hub.a2e import MemFaceAudioToExpression
from memface_hub.arrays_io import write_text_atomic
from memface_hub.audio import build_frontend
from memface_hub.evaluation.report import provenance, write_markdown_section
from memface_hub.io.shards import is_complete_shard, load_shard
from memface_hub.training.configs import A2ETrainingConfig
from memface_hub.training.train_a2e import train_a2e_many

logger = logging.getLogger("real_speech_cv")
ROOT = Path(__file__).resolve().parents[1]
# the bundled a2e's recipe (docs/results/README.md, "Training recipes on corpus v3")
BUNDLED_RECIPE = {"epochs": 150, "real_repeat": 1, "real_augment": 6, "seed": 1}
BASELINE = "synthetic_only"
PROTOCOL = ("people dealt into folds; each fold's a2e trains on the synthetic training clips and every other real "
            "person's clips (best epoch on the synthetic validation clips) and is scored on the fold's clips as "
            "scripts/real_speech_eval.py scores them; the baseline trains on the synthetic clips alone")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", required=True, help="multi-person corpus folder (corpus.json, shards/)")
    parser.add_argument("--work", required=True, help="folder of the folds' splits and training runs")
    parser.add_argument("--folds", type=int, default=4, help="number of folds (default: 4)")
    parser.add_argument("--fold-seed", type=int, default=0, help="seed that deals people into folds")
    parser.add_argument("--epochs", type=int, default=BUNDLED_RECIPE["epochs"])
    parser.add_argument("--real-repeat", type=int, default=BUNDLED_RECIPE["real_repeat"])
    parser.add_argument("--real-augment", type=int, default=BUNDLED_RECIPE["real_augment"])
    parser.add_argument("--seed", type=int, default=BUNDLED_RECIPE["seed"], help="training seed of every fold")
    parser.add_argument("--jobs", type=int, default=1, help="folds trained at once, one thread each")
    parser.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                        help="also train the recipe on the synthetic clips alone (one model scores every fold)")
    parser.add_argument("--readme", default=None, help="results page whose real-speech-cv section gets the table")
    parser.add_argument("--out", default=str(ROOT / "docs/results/real_speech_cv.json"), help="results JSON")
    parser.add_argument("--figure", default=None, help="PNG of each held-out clip's lip and loudness correlation")
    args = parser.parse_args(argv)
    if args.folds < 2:
        parser.error(f"--folds must be at least 2, got {args.folds}")
    return args


def speech_people(corpus: Path, index: dict) -> dict[str, list[str]]:
    """``{person: [clip ids]}``: the real clips of the corpus's a2e splits with a finished shard and speech."""
    people: dict[str, list[str]] = {}
    for clip in sorted(split_clips(index, "real")):
        shard_dir = corpus / "shards" / clip
        if not is_complete_shard(shard_dir):
            logger.warning("%s: no finished shard; left out", clip)
            continue
        if has_speech(load_shard(shard_dir)):
            people.setdefault(str(index["clips"][clip]["person"]), []).append(clip)
    return people


def deal_folds(people: dict[str, list[str]], folds: int, seed: int) -> list[list[str]]:
    """People dealt into ``folds`` lists: seeded order, most clips first, each to the fold with fewest clips."""
    if len(people) < folds:
        raise ValueError(f"{len(people)} people with speech cannot fill {folds} folds")
    order = sorted(people)
    random.Random(seed).shuffle(order)
    order.sort(key=lambda person: -len(people[person]))                     # stable: ties keep the seeded order
    dealt: list[list[str]] = [[] for _ in range(folds)]
    for person in order:
        lightest = min(range(folds), key=lambda k: (sum(len(people[p]) for p in dealt[k]), len(dealt[k]), k))
        dealt[lightest].append(person)
    return [sorted(fold) for fold in dealt]


def split_clips(index: dict, source: str) -> set[str]:
    """The clips of ``corpus.json``'s ``a2e_splits`` whose ``source`` is ``source`` (``real``/``synthetic``)."""
    return {clip for ids in index["a2e_splits"].values() for clip in ids
            if index["clips"].get(clip, {}).get("source") == source}


def fold_index(index: dict, held_out: set[str]) -> dict:
    """A copy of ``corpus.json`` whose ``a2e_splits`` train on the synthetic training clips and every real
    clip not held out, validate on the synthetic validation clips, and test on the held-out clips."""
    splits = index["a2e_splits"]
    real, synthetic_clips = sorted(split_clips(index, "real")), split_clips(index, "synthetic")
    synthetic = lambda ids: [clip for clip in ids if clip in synthetic_clips]  # noqa: E731
    return {**index, "a2e_splits": {"train": synthetic(splits["train"]) + [c for c in real if c not in held_out],
                                    "val": synthetic(splits["val"]),
                                    "test_real": [c for c in real if c in held_out]}}


def plot_clips(path: Path, rows: list[dict], title: str) -> Path:
    """Bars: each held-out clip's lip correlation (whole clip, lag 0) beside its loudness baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(rows, key=lambda row: row["lip_corr_0"])
    positions = np.arange(len(rows))
    figure, axis = plt.subplots(figsize=(8, 2.8), dpi=100)
    axis.bar(positions - 0.2, [row["lip_corr_0"] for row in rows], 0.4, color="tab:red", label="a2e (held out)")
    axis.bar(positions + 0.2, [row["loudness_corr_0"] for row in rows], 0.4, color="tab:blue", alpha=0.5,
             label="loudness baseline")
    axis.axhline(0, color="black", linewidth=0.6)
    axis.set_xticks(positions, [row["clip"] for row in rows], rotation=70, fontsize=6)
    axis.set_ylabel("lip corr (lag 0)", fontsize=8)
    axis.set_title(title, fontsize=9)
    axis.legend(fontsize=7)
    return save_figure(figure, path)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("accelerate").setLevel(logging.WARNING)
    import torch

    torch.set_num_threads(1)
    corpus, work = Path(args.corpus), Path(args.work)
    index_path = corpus / "corpus.json"
    if not index_path.is_file() or not (corpus / "shards").is_dir():
        logger.error("%s: not a corpus folder (no corpus.json or shards/; build one with `memface build-corpus`)",
                     corpus)
        return 2
    index = json.loads(index_path.read_text())
    if "a2e_splits" not in index:
        logger.error("%s: not a multi-person corpus (no a2e_splits; `memface build-corpus --real ...` makes one)",
                     index_path)
        return 2
    people = speech_people(corpus, index)
    try:
        folds = deal_folds(people, args.folds, args.fold_seed)
    except ValueError as err:
        logger.error("%s: %s", corpus, err)
        return 2

    # 1. one training run per fold (and the baseline), planned up front so that --jobs trains them side by side
    work.mkdir(parents=True, exist_ok=True)
    held_out = [{clip for person in fold for clip in people[person]} for fold in folds]
    runs = {f"fold_{k}": clips for k, clips in enumerate(held_out)}
    if args.baseline:
        runs[BASELINE] = split_clips(index, "real")              # silent ones too
    configs = []
    for name, clips in runs.items():
        split_path = work / f"{name}.json"
        write_text_atomic(split_path, json.dumps(fold_index(index, clips), indent=1))
        configs.append(A2ETrainingConfig(
            shards=str(corpus / "shards"), output_dir=str(work / name), splits=str(split_path),
            frontend={"name": "mel"}, epochs=args.epochs, real_repeat=args.real_repeat,
            real_augment=args.real_augment, seed=args.seed, progress=args.jobs <= 1))
    for k, fold in enumerate(folds):
        logger.info("fold %d: %s (%d clips)", k, ", ".join(fold), len(held_out[k]))
    best = dict(zip(runs, train_a2e_many(configs, jobs=args.jobs)))

    # 2. each fold's model on its own held-out people (the baseline on everyone), as real_speech_eval.py scores
    scored = score_folds(corpus, people, folds, [best[f"fold_{k}"] for k in range(len(folds))])
    result = {**provenance(dict(vars(args))), "protocol": PROTOCOL,
              "folds": [{"fold": k, "people": fold, "clips": [c for p in fold for c in people[p]],
                         "a2e": str(best[f"fold_{k}"])} for k, fold in enumerate(folds)],
              **scored}
    if args.baseline:
        baseline = score_folds(corpus, people, folds, [best[BASELINE]] * len(folds))
        result["without_real"] = {"a2e": str(best[BASELINE]), "clips": baseline["clips"],
                                  "summary": baseline["summary"], "test_part": baseline["test_part"]}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, json.dumps(result, indent=1))
    whole = result["summary"]
    if args.figure:
        plot_clips(Path(args.figure), result["clips"],
                   f"{args.folds}-fold cross-validation over {whole['people']} real people: mean lip corr "
                   f"{whole['lip_corr_0']:.2f}, loudness {whole['loudness_corr_0']:.2f} (whole clips, lag 0)")
    if args.readme:
        write_markdown_section(args.readme, "real-speech-cv", "Real speech, cross-validated by person",
                               markdown_table(result))
    logger.info("%d clips of %d people: mean whole-clip lip corr %s (loudness baseline %s), |lag| <= 1 on %s; "
                "wrote %s", whole["clips"], whole["people"], whole["lip_corr_0"], whole["loudness_corr_0"],
                whole["lag_within_1_fraction"], out)
    return 0


def score_folds(corpus: Path, people: dict[str, list[str]], folds: list[list[str]], models: list[Path]) -> dict:
    """Each fold's people scored with its model: ``{"clips", "summary", "test_part": {"clips", "summary"}}``
    (whole-clip rows at the top level, as in ``real_speech.json``)."""
    rows = {"whole_clip": [], "test_part": []}
    for k, (fold, model_dir) in enumerate(zip(folds, models)):
        model = MemFaceAudioToExpression.from_pretrained(str(model_dir)).eval()
        frontend = build_frontend(model.frontend)
        for person in fold:
            for clip in people[person]:
                shard = load_shard(corpus / "shards" / clip)
                for key, test_part in (("whole_clip", False), ("test_part", True)):
                    row = evaluate_clip(model, frontend, shard, test_part)
                    if row is None:
                        logger.warning("fold %d, %s (%s): no sound in the %s; not scored", k, clip, person, key)
                        continue
                    rows[key].append({**row, "person": person, "fold": k})
                    logger.info("fold %d, %s (%s) with %s, %s: lip corr %s (loudness %s)", k, clip, person,
                                Path(model_dir).parent.name, key, row["lip_corr_0"], row["loudness_corr_0"])
    summary = {key: {**summarise(part, "mel"), "people": len({row["person"] for row in part}),
                     "lip_corr_0_std": round(float(np.std([row["lip_corr_0"] for row in part], ddof=1)), 4),
                     "per_fold_lip_corr_0": [round(float(np.mean([row["lip_corr_0"] for row in part
                                                                  if row["fold"] == k])), 4)
                                             for k in range(len(folds))]}
               for key, part in rows.items()}
    return {"clips": rows["whole_clip"], "summary": summary["whole_clip"],
            "test_part": {"clips": rows["test_part"], "summary": summary["test_part"]}}


def markdown_table(result: dict) -> str:
    """The results page's table: mean lip correlation (whole clip and test part) with and without real clips."""
    def line(label: str, part: dict) -> str:
        whole, test = part["summary"], part["test_part"]["summary"]
        folds = " / ".join(f"{value:.2f}" for value in whole["per_fold_lip_corr_0"])
        return (f"| {label} | {whole['lip_corr_0']:.2f} | {whole['lip_corr_0_std']:.2f} | {folds} | "
                f"{whole['lag_within_1_fraction']:.0%} | {test['lip_corr_0']:.2f} |")

    whole = result["summary"]
    lines = [f"{whole['clips']} real clips with speech of {whole['people']} people, dealt by person into "
             f"{len(result['folds'])} folds; each clip scored by a model that never saw its person. Mean lip "
             "correlation at lag 0 (docs/EVALUATION.md), whole clip and test part after the real-people cut.",
             "",
             r"| a2e trained on | whole clip | std over clips | per fold | \|lag\| ≤ 1 (whole) | test part |",
             "|---|---|---|---|---|---|",
             line("synthetic clips + every other real person (the bundled recipe)", result)]
    if "without_real" in result:
        lines.append(line("synthetic clips only", result["without_real"]))
    loud = result["summary"]["loudness_corr_0"], result["test_part"]["summary"]["loudness_corr_0"]
    lines.append(f"| loudness baseline (no model) | {loud[0]:.2f} | | | | {loud[1]:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
