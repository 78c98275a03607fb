"""Tracked frames per real clip of a multi-person corpus, as JSON and a results table.

    python scripts/corpus_table.py ../data/corpus

Reads ``corpus.json`` written by ``memface build-corpus`` (which preprocessed every clip) and writes
``docs/results/real_clips.json`` and its table in ``docs/results/README.md``: per real clip its person,
split, frames, tracked and usable frames, and sound; refused inputs with their reason. For the synthetic
clips, how one-to-many the corpus is: the spread (coefficient of variation) of the re-tracked mouth opening
at the centres of each open vowel across all clips, and how many sentences are spoken by several clips.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from memface_hub.arrays_io import write_text_atomic
from memface_hub.data.visemes import OPEN_VOWELS
from memface_hub.evaluation.a2e_eval import clip_timeline
from memface_hub.evaluation.a2e_metrics import centre_frames
from memface_hub.evaluation.report import provenance, write_markdown_section
from memface_hub.face.geometry import mouth_opening
from memface_hub.io.shards import load_shard

logger = logging.getLogger("corpus_table")
ROOT = Path(__file__).resolve().parents[1]


def one_to_many(corpus: Path, clip_ids: list[str]) -> dict:
    """The spread of the tracked mouth opening (canonical units) at open-vowel centres, per vowel across clips:
    the median over vowels of its coefficient of variation, and the sentences spoken by more than one clip."""
    openings: dict[str, list[float]] = {}
    texts: dict[str, int] = {}
    for clip_id in clip_ids:
        timeline = clip_timeline(corpus, clip_id)
        shard = load_shard(corpus / "shards" / clip_id)
        opening = mouth_opening(shard.mouth_vertices)                                    # (T,)
        texts[timeline["text"]] = texts.get(timeline["text"], 0) + 1
        for symbol, start, end in timeline["phonemes"]:
            vowel = symbol.lstrip("',%")
            frame = centre_frames([[vowel, start, end]], OPEN_VOWELS, timeline["fps"], shard.num_frames)
            if len(frame) and shard.valid[frame[0]]:
                openings.setdefault(vowel, []).append(float(opening[frame[0]]))
    spread = {vowel: float(np.std(values) / np.mean(values)) for vowel, values in openings.items()
              if len(values) >= 5 and np.mean(values) > 0}
    return {"open_vowel_cv_median": float(np.median(list(spread.values()))) if spread else None,
            "open_vowel_cv": {vowel: round(value, 3) for vowel, value in sorted(spread.items())},
            "vowel_centres": sum(len(values) for values in openings.values()),
            "sentences": len(texts), "sentences_in_several_clips": sum(count > 1 for count in texts.values())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", help="corpus folder (memface build-corpus --out)")
    parser.add_argument("--out", default=str(ROOT / "docs/results/real_clips.json"))
    parser.add_argument("--readme", default=str(ROOT / "docs/results/README.md"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    index_path = Path(args.corpus) / "corpus.json"
    if not index_path.is_file():
        logger.error("%s: no corpus.json (build the corpus with memface build-corpus first)", args.corpus)
        return 2
    index = json.loads(index_path.read_text())
    clips = [{"clip": clip, **{key: info[key] for key in ("person", "split", "frames", "frames_tracked",
                                                          "frames_valid", "has_audio")}}
             for clip, info in sorted(index["clips"].items()) if info["source"] == "real"]
    synthetic = [info for info in index["clips"].values() if info["source"] == "synthetic"]
    result = {**provenance({"corpus": str(index_path)}), "clips": clips, "refused": index.get("refused", []),
              "synthetic": {"clips": len(synthetic), "people": len({info["person"] for info in synthetic}),
                            "frames": sum(info["frames"] for info in synthetic),
                            "frames_tracked": sum(info["frames_tracked"] for info in synthetic),
                            "one_to_many": one_to_many(Path(args.corpus), sorted(
                                clip for clip, info in index["clips"].items() if info["source"] == "synthetic"))}}
    spread = result["synthetic"]["one_to_many"]
    write_text_atomic(args.out, json.dumps(result, indent=1))
    lines = [f"`python scripts/corpus_table.py CORPUS` at `{result['git_commit']}`: every shared real clip through "
             f"`memface build-corpus` (25 fps). {len(clips)} real clips used, {len(result['refused'])} refused; "
             f"synthetic: {result['synthetic']['clips']} clips of {result['synthetic']['people']} faces, "
             f"{result['synthetic']['frames_tracked']} of {result['synthetic']['frames']} frames tracked; "
             f"{spread['sentences']} sentences, {spread['sentences_in_several_clips']} of them in several clips; the "
             f"tracked mouth opening at open-vowel centres varies across clips by a median coefficient of variation "
             f"of {spread['open_vowel_cv_median']:.2f} per vowel ({spread['vowel_centres']} centres).", "",
             "| clip | person | split | frames | tracked | usable | sound |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {c['clip']} | {c['person']} | {c['split']} | {c['frames']} | {c['frames_tracked']} | "
              f"{c['frames_valid']} | {'yes' if c['has_audio'] else 'no'} |" for c in clips]
    lines += [f"| refused: {Path(r['input']).name} | | | | | | {r['reason']} |" for r in result["refused"]]
    write_markdown_section(args.readme, "real-clips",
                           "Real clips through preprocessing (`docs/results/real_clips.json`)", "\n".join(lines))
    logger.info("%d real clips, %d refused → %s", len(clips), len(result["refused"]), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
