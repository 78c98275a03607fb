"""The mouth sharpness a renderer at a given crop size could reach at best: the real crop, pasted back.

    python scripts/sharpness_ceiling.py --corpus ../data/corpus              # the test people, crops 128 and 256

For each real clip of the held-out people (split ``test`` of ``memface_hub/data/real_people.json``, as recorded
in the corpus made by ``memface build-corpus``): every third tracked frame's own aligned crop (from the shard, resized
to the crop size) is pasted back into the frame over the mouth box, exactly as generation does, and the
mouth sharpness ratio of docs/EVALUATION.md ("Real people": median Laplacian variance of the outer-lip box,
pasted ÷ real) is measured with the shard's landmarks. A perfect renderer at that crop size gets this ratio;
what it lacks is the detail the crop cannot hold where the face is larger than the crop. Writes
``docs/results/sharpness_ceiling.json`` (with the commit, config and command).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import cv2
import numpy as np

from memface_hub.arrays_io import write_text_atomic
from memface_hub.evaluation.real_people import mouth_sharpness
from memface_hub.evaluation.report import provenance
from memface_hub.face.crop import CropLayout, feathered_mask, paste_back
from memface_hub.io.shards import load_shard
from memface_hub.io.video import iter_frames

logger = logging.getLogger("sharpness_ceiling")
ROOT = Path(__file__).resolve().parents[1]


def ceiling(shard_dir: Path, sizes: list[int], step: int = 3) -> dict[int, float]:
    """Sharpness ratio of the real crop pasted back at each crop size, for one shard."""
    shard = load_shard(shard_dir)
    layout = CropLayout(**shard.meta["crop_layout"])
    frames = list(iter_frames(shard.meta["source"], fps=shard.meta["fps"], max_frames=shard.num_frames))
    crops = list(iter_frames(shard.crops_path))
    ratios = {}
    for size in sizes:
        box = CropLayout(**{**shard.meta["crop_layout"], "size": size}).mouth_box()
        mask = feathered_mask(size, box, max(1, 6 * size // 128))
        real, pasted = [], []
        for index in range(0, min(len(frames), len(crops)), step):
            if not shard.valid[index]:
                continue
            crop = cv2.resize(crops[index], (size, size), interpolation=cv2.INTER_AREA)
            out = paste_back(frames[index], crop, shard.crop_affines[index] * (size / layout.size), mask, box)
            real.append(mouth_sharpness(frames[index], shard.landmarks[index]))
            pasted.append(mouth_sharpness(out, shard.landmarks[index]))
        ratios[size] = float(np.nanmedian(pasted) / np.nanmedian(real))
    return ratios


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default=str(ROOT.parent / "data" / "corpus"), help="build-corpus output folder")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256], help="crop sizes")
    parser.add_argument("--split", default="test", help="whose clips (default: the test people)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "results" / "sharpness_ceiling.json"))
    args = parser.parse_args(argv)
    corpus = Path(args.corpus)
    if not (corpus / "corpus.json").is_file():
        logger.error("%s: no corpus.json here; build it with `memface build-corpus` first", corpus)
        return 2
    index = json.loads((corpus / "corpus.json").read_text())
    rows = []
    for clip, info in sorted(index["clips"].items()):
        if info.get("source") != "real" or info.get("split") != args.split:
            continue
        ratios = ceiling(corpus / "shards" / clip, args.sizes)
        rows.append({"clip": clip, "person": info["person"],
                     **{f"crop_{size}": ratio for size, ratio in ratios.items()}})
        logger.info("%s: %s", clip, ", ".join(f"crop {size}: {ratio:.2f}" for size, ratio in ratios.items()))
    mean = {f"crop_{size}": float(np.mean([row[f"crop_{size}"] for row in rows])) for size in args.sizes}
    logger.info("mean over %d clips: %s", len(rows), mean)
    result = {**provenance({"corpus": args.corpus, "sizes": args.sizes, "split": args.split}),
              "clips": rows, "mean": mean}
    write_text_atomic(Path(args.out), json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
