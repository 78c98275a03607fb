"""Lip-sync on real speech: does an a2e model's mouth follow a real, held-out speaker's lips?

    python scripts/real_speech_eval.py                                   # the bundled a2e, test people
    python scripts/real_speech_eval.py --a2e runs/a2e_mel/best --out runs/a2e_mel/real_speech.json

For each person of ``--split`` in the people file (default: the committed
``memface_hub/data/real_people.json``), each of their real clips whose shard (under
``<corpus>/shards``, built by ``memface build-corpus``) has speech is evaluated on the **test part**,
the frames after ``c = min(15 s, 0.7 × length)`` — the frames the renderer's real-people evaluation
(``scripts/real_people_eval.py``) scores, driven by the audio of that part only (``--whole-clip``:
every frame). The model predicts expressions from the audio, the clip's own neutral mouth turns them
into mouth vertices, and their mouth opening (inner-lip gap, landmarks 13/14, canonical units) is
correlated with the real speaker's tracked lip gap ``|p13 − p14| / |p10 − p152|`` (image pixels,
docs/EVALUATION.md "Real people"): Pearson at lag 0, and the best lag in [−5, 5] frames. The loudness
baseline correlates the log RMS loudness of the same audio with the same lips.

GRID clips (``grid_*``) also get the bilabial closure of docs/EVALUATION.md on their whole utterance: the
words come from the clip id, pocketsphinx forced alignment gives the m/b/p and open-vowel centres,
``τ = 0.25 × median`` real tracked opening (canonical units) at the open-vowel centres; a bilabial is
closed when the predicted opening is ``≤ τ``. The real lips' own rate under the same rule is given as
a check of the alignment.

Rows "before" and "after" a2e adaptation (paper Sec. 4.2; ``memface adapt --a2e-finetune-steps``): each
clip's adaptation part (the frames before ``c``, its features from the audio before ``c`` only) fine-tunes
the model as ``adapt_speaker`` does (``memface_hub.training.adapt_a2e.finetune_a2e``: implicit memory and
decoder, the adaptation part's last 20 % held out to keep the best weights or none), and the test part is
scored again with the adapted model (``--a2e-adapt-steps 0``: no adaptation rows).

``--compare A2E...``: the a2e models of other front ends (or trainings) on the same clips, each on the
test part and on the whole clip (``frontend_comparison``); the default front end is picked from it.

Writes ``--out`` (default ``docs/results/real_speech.json``) with the commit, command and config.
Only shards are read; nothing from the clips is written into the repository.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from memface_hub.a2e import MemFaceAudioToExpression
from memface_hub.arrays_io import write_text_atomic
from memface_hub.audio import build_frontend, cached_features
from memface_hub.audio.base import SILENCE_PEAK
from memface_hub.data.a2e_clips import FEATURE_CACHE
from memface_hub.data.corpus import load_people
from memface_hub.errors import MemFaceInputError
from memface_hub.evaluation.a2e_metrics import bilabial_counts
from memface_hub.evaluation.grid import (
    ARPABET_BILABIALS,
    ARPABET_OPEN_VOWELS,
    ForcedAligner,
    grid_sentence,
    is_grid_clip,
)
from memface_hub.evaluation.real_people import adaptation_cut, fill_missing, lip_correlation, lip_gaps, loudness
from memface_hub.evaluation.report import provenance
from memface_hub.face.geometry import mouth_opening
from memface_hub.io.audio import AUDIO_SAMPLE_RATE, load_audio
from memface_hub.io.shards import is_complete_shard, load_shard
from memface_hub.training.adapt_a2e import finetune_a2e, speech_clip, take_frames

logger = logging.getLogger("real_speech_eval")
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_A2E = ROOT / "memface_hub/assets/demo_pipeline/a2e"
DEFAULT_CORPUS = ROOT.parent / "data" / "corpus"      # where the README builds it: ../data/corpus
CLIP_KEYS = ("clip", "lip_corr_0", "lip_corr_best", "lag", "loudness_corr_0")
DEFAULT_ADAPT_STEPS = 100
DEFAULT_ADAPT_LR = 1e-3


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS),
                        help=f"corpus folder with shards/ (memface build-corpus; default: {DEFAULT_CORPUS})")
    parser.add_argument("--a2e", default=str(DEFAULT_A2E), help="a2e model folder (default: the bundled one)")
    parser.add_argument("--people", default=None, help="people file (default: the committed split)")
    parser.add_argument("--split", default="test", help="which people to evaluate (default: test)")
    parser.add_argument("--test-part", action=argparse.BooleanOptionalAction, default=True,
                        help="evaluate the frames after c = min(15 s, 0.7 × length) only, driven by their audio "
                             "(default; --no-test-part: the whole clip)")
    parser.add_argument("--closure", action=argparse.BooleanOptionalAction, default=True,
                        help="bilabial closure of GRID clips by forced alignment (default: on)")
    parser.add_argument("--a2e-adapt-steps", type=int, default=DEFAULT_ADAPT_STEPS,
                        help="a2e adaptation step budget per clip for the before/after rows "
                             f"(default: {DEFAULT_ADAPT_STEPS}; 0: no adaptation rows)")
    parser.add_argument("--a2e-adapt-lr", type=float, default=DEFAULT_ADAPT_LR,
                        help=f"a2e adaptation learning rate (default: {DEFAULT_ADAPT_LR:g}, finetune_a2e's)")
    parser.add_argument("--compare", nargs="+", default=[], metavar="A2E",
                        help="more a2e model folders (e.g. trained with other front ends) measured on the same clips "
                             "as --a2e, on the test part and on the whole clip (no adaptation): the "
                             "'frontend_comparison' rows")
    parser.add_argument("--out", default=str(ROOT / "docs/results/real_speech.json"), help="results JSON")
    parser.add_argument("--figure", default=None,
                        help="PNG of predicted vs real lip motion on the longest evaluated clip (e.g. "
                             "docs/real_speech_lips.png)")
    return parser.parse_args(argv)


def plot_lips(path: Path, model, frontend, shard, title: str) -> Path:
    """The whole clip: the real speaker's lip gap, the model's predicted opening and the loudness, each
    standardised (zero mean, unit variance), with the protocol's cut marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fps = float(shard.meta.get("fps", 25.0))
    audio = load_audio(shard.audio_path)
    standard = lambda x: (x - np.mean(x)) / (np.std(x) + 1e-9)  # noqa: E731
    real = real_lip_gaps(shard)
    predicted = predicted_opening(model, frontend, audio, shard.num_frames, shard.neutral_mouth)
    loud = loudness(audio, AUDIO_SAMPLE_RATE, shard.num_frames, fps)
    seconds = np.arange(shard.num_frames) / fps
    figure, axis = plt.subplots(figsize=(8, 2.6), dpi=100)
    axis.plot(seconds, standard(real), color="black", label="real lips (tracked)")
    axis.plot(seconds, standard(predicted), color="tab:red", label="predicted mouth opening")
    axis.plot(seconds, standard(loud), color="tab:blue", alpha=0.4, label="loudness")
    axis.axvline(adaptation_cut(shard.num_frames, fps) / fps, color="grey", linestyle="--", linewidth=1)
    axis.set_xlabel("seconds (dashed: adaptation | test cut)")
    axis.set_yticks([])
    axis.set_title(title, fontsize=9)
    axis.legend(fontsize=7, loc="upper right", ncol=3)
    return save_figure(figure, path)


def save_figure(figure, path: Path) -> Path:
    """Write a matplotlib figure to ``path`` (a temporary file, then a rename) and close it."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp.png")
    figure.savefig(temporary)
    plt.close(figure)
    temporary.replace(path)
    return path


def held_out_clips(corpus: Path, people_file: str | None, split: str) -> list[tuple[str, str]]:
    """``(person, clip id)`` for every real clip of the people of ``split`` that has a finished shard."""
    chosen = []
    for person in load_people(people_file).values():
        if person.split != split:
            continue
        for clip in person.clips:
            if is_complete_shard(corpus / "shards" / clip):
                chosen.append((person.name, clip))
            else:
                logger.warning("%s (%s): no shard under %s; skipped", clip, person.name, corpus / "shards")
    return chosen


def is_silent(audio: np.ndarray) -> bool:
    return audio.size == 0 or float(np.abs(audio).max()) < SILENCE_PEAK


def has_speech(shard) -> bool:
    """Whether a shard has an audio track that is not silent."""
    return shard.audio_path is not None and not is_silent(load_audio(shard.audio_path))


def predicted_opening(model: MemFaceAudioToExpression, frontend, audio: np.ndarray, num_frames: int,
                      neutral: np.ndarray, cache_dir: Path | None = None) -> np.ndarray:
    """Mouth opening ``(num_frames,)`` (canonical units) of the vertices the model predicts for ``audio``,
    on the clip's own neutral mouth."""
    import torch

    if cache_dir is not None:
        features = cached_features(frontend, audio, AUDIO_SAMPLE_RATE, num_frames, cache_dir)
    else:
        features = frontend(audio, AUDIO_SAMPLE_RATE, num_frames)
    expressions = model.predict(features)                                               # (T, K)
    vertices = model.vertices(expressions, torch.as_tensor(neutral, dtype=torch.float32))
    return mouth_opening(vertices.cpu().numpy())


def real_lip_gaps(shard) -> np.ndarray:
    """The real speaker's tracked lip gap per frame (docs/EVALUATION.md), untracked frames interpolated."""
    gaps = lip_gaps(shard.landmarks)
    gaps[~shard.detected] = np.nan
    return fill_missing(gaps)


def finite_or_none(value: float, digits: int = 4):
    return None if value is None or not math.isfinite(value) else round(float(value), digits)


def evaluate_clip(model, frontend, shard, test_part: bool) -> dict | None:
    """One clip's row (:data:`CLIP_KEYS`), or ``None`` when the evaluated audio is silent."""
    fps = float(shard.meta.get("fps", 25.0))
    audio = load_audio(shard.audio_path)
    first = adaptation_cut(shard.num_frames, fps) if test_part else 0
    count = shard.num_frames - first
    start = int(round(first / fps * AUDIO_SAMPLE_RATE))
    audio = audio[start:start + int(round(count / fps * AUDIO_SAMPLE_RATE))]
    if count < 3 or is_silent(audio):
        return None
    opening = predicted_opening(model, frontend, audio, count, shard.neutral_mouth,
                                None if test_part else shard.path / FEATURE_CACHE)
    real = real_lip_gaps(shard)[first:]
    lips = lip_correlation(opening, real)
    loud = lip_correlation(loudness(audio, AUDIO_SAMPLE_RATE, count, fps), real)
    return {"clip": shard.path.name, "lip_corr_0": finite_or_none(lips.at_zero),
            "lip_corr_best": finite_or_none(lips.best), "lag": int(lips.lag),
            "loudness_corr_0": finite_or_none(loud.at_zero)}


def grid_closure(model, frontend, shards: list) -> dict:
    """Bilabial closure (docs/EVALUATION.md) of GRID clips on their whole utterance, by forced alignment."""
    aligner = ForcedAligner(AUDIO_SAMPLE_RATE)
    clips, failures = [], []
    for shard in shards:
        clip_id = shard.path.name
        words = grid_sentence(clip_id)
        audio = load_audio(shard.audio_path)
        try:
            alignment = aligner.align(audio, words)
        except RuntimeError as err:
            logger.warning("%s: forced alignment failed (%s); no closure for it", clip_id, err)
            failures.append({"clip": clip_id, "reason": str(err)})
            continue
        fps = float(shard.meta.get("fps", 25.0))
        predicted = predicted_opening(model, frontend, audio, shard.num_frames, shard.neutral_mouth,
                                      shard.path / FEATURE_CACHE)
        real = mouth_opening(shard.mouth_vertices)                      # tracked, canonical units
        sets = {"bilabials": ARPABET_BILABIALS, "open_vowels": ARPABET_OPEN_VOWELS}
        closed, total = bilabial_counts(predicted, real, alignment["phones"], fps, **sets)
        real_closed, _ = bilabial_counts(real, real, alignment["phones"], fps, **sets)
        vowel_frames = [int((start + end) / 2 * fps) for name, start, end in alignment["phones"]
                        if name in ARPABET_OPEN_VOWELS]
        tau = 0.25 * float(np.median(real[vowel_frames])) if vowel_frames else float("nan")
        clips.append({"clip": clip_id, "sentence": " ".join(words), "bilabials": total, "closed": closed,
                      "real_closed": real_closed, "tau": finite_or_none(tau, 5),
                      "phones": [[name, round(start, 2), round(end, 2)] for name, start, end in alignment["phones"]]})
        logger.info("%s (%s): %d/%d bilabials closed (real lips %d/%d)", clip_id, " ".join(words), closed, total,
                    real_closed, total)
    total = sum(c["bilabials"] for c in clips)
    result = {"method": "pocketsphinx forced alignment of the words in the clip id (en-us model), whole utterance; "
                        "tau = 0.25 x median real tracked opening (canonical) at open-vowel centres",
              "measured": bool(clips and total), "clips": clips, "failures": failures,
              "bilabials": total,
              "closure_rate": round(sum(c["closed"] for c in clips) / total, 4) if total else None,
              "real_closure_rate": round(sum(c["real_closed"] for c in clips) / total, 4) if total else None}
    return result


def adapt_on_first_part(model, frontend, shard, steps: int, learning_rate: float):
    """Fine-tune on the clip's adaptation part (frames before ``c``, features from the audio before ``c``
    only, targets as in training) as ``adapt_speaker`` does → :class:`A2EAdaptation`, or ``None`` when that
    part has no speech."""
    fps = float(shard.meta.get("fps", 25.0))
    cut = adaptation_cut(shard.num_frames, fps)
    audio = load_audio(shard.audio_path)[:int(round(cut / fps * AUDIO_SAMPLE_RATE))]
    if is_silent(audio):
        return None
    clip = speech_clip(shard.path, model)                           # targets: tracked mouth, the model's basis
    part = replace(take_frames(clip, 0, cut), features=frontend(audio, AUDIO_SAMPLE_RATE, cut).astype(np.float32))
    return finetune_a2e(model, part, steps=steps, learning_rate=learning_rate, progress=False)


def adaptation_rows(model, frontend, evaluated: list, before: list[dict], args) -> dict:
    """The "before" and "after" rows of a2e adaptation on each evaluated clip (see the module docstring)."""
    after, runs = [], []
    for (person, shard), row in zip(evaluated, before):
        result = adapt_on_first_part(model, frontend, shard, args.a2e_adapt_steps, args.a2e_adapt_lr)
        if result is None:
            logger.warning("%s (%s): no speech before the cut; no adaptation row", row["clip"], person)
            continue
        after.append(evaluate_clip(result.model, frontend, shard, args.test_part))
        runs.append({"clip": row["clip"], "kept": result.kept, "steps": result.steps,
                     "seconds": round(result.seconds, 1), "train_frames": result.train_frames,
                     "held_out_frames": result.held_out_frames,
                     "held_out_rmse_before": finite_or_none(result.base_error, 5),
                     "held_out_rmse_after": finite_or_none(result.error, 5)})
        logger.info("%s (%s): a2e adapted (%s, held-out RMSE %s -> %s): lip corr %s -> %s", row["clip"], person,
                    "kept" if result.kept else "not kept", runs[-1]["held_out_rmse_before"],
                    runs[-1]["held_out_rmse_after"], row["lip_corr_0"], after[-1]["lip_corr_0"])
    adapted = {run["clip"] for run in runs}
    before = [row for row in before if row["clip"] in adapted]
    name = str(model.frontend.get("name"))
    return {"protocol": "adapt on the frames before c = min(15 s, 0.7 x length) (features from that audio only), "
                        "test on the frames after c; fine-tuning: memface_hub.training.adapt_a2e.finetune_a2e "
                        "(implicit memory + decoder, last 20 % of the adaptation part held out, best check or none)",
            "steps": args.a2e_adapt_steps, "learning_rate": args.a2e_adapt_lr,
            "before": {"clips": before, "summary": summarise(before, name)},
            "after": {"clips": after, "summary": summarise(after, name)},
            "fine_tuning": runs}


def comparison_row(path: str, evaluated: list) -> dict:
    """One a2e model on the evaluated clips: summaries of the test part and of the whole clip, and per clip
    the lip correlation at lag 0 of each."""
    model = MemFaceAudioToExpression.from_pretrained(path).eval()
    frontend = build_frontend(model.frontend)
    name = str(model.frontend.get("name"))
    parts = {}
    for key, test_part in (("test_part", True), ("whole_clip", False)):
        rows = [row for _, shard in evaluated if (row := evaluate_clip(model, frontend, shard, test_part))]
        parts[key] = {"summary": summarise(rows, name), "lip_corr_0": {row["clip"]: row["lip_corr_0"] for row in rows}}
    logger.info("%s (%s): mean lip corr %s on the test parts, %s on whole clips", path, name,
                parts["test_part"]["summary"]["lip_corr_0"], parts["whole_clip"]["summary"]["lip_corr_0"])
    return {"a2e": str(path), "frontend": name, **parts}


def summarise(rows: list[dict], frontend_name: str) -> dict:
    def mean(key):
        values = [row[key] for row in rows if row[key] is not None]
        return round(float(np.mean(values)), 4) if values else None

    return {"clips": len(rows), "lip_corr_0": mean("lip_corr_0"), "loudness_corr_0": mean("loudness_corr_0"),
            "lag_within_1_fraction": round(float(np.mean([abs(row["lag"]) <= 1 for row in rows])), 4) if rows else None,
            "frontend": frontend_name}


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(1)
    corpus = Path(args.corpus)
    if not (corpus / "shards").is_dir():
        logger.error("%s: not a corpus folder (no shards/ in it; build one with `memface build-corpus`)", corpus)
        return 2
    if not (Path(args.a2e) / "config.json").is_file():
        logger.error("%s: not an a2e model folder (no config.json)", args.a2e)
        return 2
    try:
        clips = held_out_clips(corpus, args.people, args.split)
    except MemFaceInputError as err:
        logger.error("%s", err)
        return 2
    model = MemFaceAudioToExpression.from_pretrained(args.a2e).eval()
    frontend = build_frontend(model.frontend)
    rows, grid_shards, evaluated = [], [], []
    for person, clip in clips:
        shard = load_shard(corpus / "shards" / clip)
        if not has_speech(shard):
            logger.warning("%s (%s): no speech in the clip; skipped", clip, person)
            continue
        row = evaluate_clip(model, frontend, shard, args.test_part)
        if row is None:
            logger.warning("%s (%s): the evaluated part has no sound; skipped", clip, person)
            continue
        rows.append(row)
        evaluated.append((person, shard))
        if is_grid_clip(clip):
            grid_shards.append(shard)
        logger.info("%s (%s): lip corr %s at lag 0, best %s at lag %d; loudness %s", clip, person,
                    row["lip_corr_0"], row["lip_corr_best"], row["lag"], row["loudness_corr_0"])
    if not rows:
        logger.error("no %s person of the people file has a clip with speech under %s", args.split, corpus / "shards")
        return 2
    summary = summarise(rows, str(model.frontend.get("name")))
    config = {"a2e": str(args.a2e), "compare": list(args.compare), "corpus": str(corpus), "split": args.split,
              "test_part": args.test_part,
              "people_file": args.people or "bundled", "frontend_config": model.frontend,
              "a2e_adapt_steps": args.a2e_adapt_steps, "a2e_adapt_lr": args.a2e_adapt_lr}
    result = {**provenance(config), "clips": rows, "summary": summary}
    if args.closure:
        result["grid_closure"] = grid_closure(model, frontend, grid_shards) if grid_shards else \
            {"measured": False, "reason": "no GRID clip among the evaluated ones"}
    else:
        result["grid_closure"] = {"measured": False, "reason": "not requested (--no-closure)"}
    if args.compare:
        result["frontend_comparison"] = [comparison_row(path, evaluated) for path in [args.a2e, *args.compare]]
    if args.a2e_adapt_steps > 0 and not args.test_part:
        logger.warning("no a2e adaptation rows with --no-test-part: the adaptation part would be tested too")
    elif args.a2e_adapt_steps > 0:
        result["a2e_adaptation"] = adaptation_rows(model, frontend, evaluated, rows, args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, json.dumps(result, indent=1))
    if args.figure:
        longest = max(evaluated, key=lambda item: item[1].num_frames)
        whole = evaluate_clip(model, frontend, longest[1], test_part=False)
        plot_lips(Path(args.figure), model, frontend, longest[1],
                  f"held-out {longest[0]} ({longest[1].path.name}), whole clip: lip corr {whole['lip_corr_0']:.2f}, "
                  f"loudness {whole['loudness_corr_0']:.2f} (a2e: {Path(args.a2e).name})")
    logger.info("%d clips: mean lip corr %s (loudness baseline %s), |lag| <= 1 on %s; wrote %s", summary["clips"],
                summary["lip_corr_0"], summary["loudness_corr_0"], summary["lag_within_1_fraction"], out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
