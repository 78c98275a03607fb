"""Regenerate the bundled demo weights and demo speaker (``memface_hub/assets/``) from scratch.

    python scripts/build_demo_assets.py                       # every stage, reusing finished ones
    python scripts/build_demo_assets.py --a2e-from RUN/best --renderer-from RUN/best   # reuse trained models

Stages (each skipped when its output exists):
1. the demo corpus (``memface demo-data``: the astronaut photo + espeak-ng speech) and its shards;
2. the a2e model (``train_a2e``, mel front end, implicit memory) on the corpus's train split;
3. the renderer (``train_renderer``, explicit memory, crop 128) on the same split;
4. the demo speaker: 10 s of training clips joined, preprocessed at the renderer's crop size,
   and its explicit memory built (Alg. 1) → ``memface_hub/assets/demo_speaker``;
5. the pipeline (``model_index.json`` + ``a2e/`` + ``renderer/``) → ``memface_hub/assets/demo_pipeline``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path

from memface_hub.a2e import MemFaceAudioToExpression
from memface_hub.data.demo_corpus import build_demo_corpus
from memface_hub.data.preprocess import preprocess_clip, preprocess_clips
from memface_hub.face.crop import CropLayout
from memface_hub.io.video import concatenate_videos
from memface_hub.pipeline import DEMO_PIPELINE, DEMO_SPEAKER, MemFacePipeline
from memface_hub.renderer import MemFaceRenderer
from memface_hub.speaker import SpeakerMemory
from memface_hub.training.train_a2e import A2ETrainingConfig, train_a2e
from memface_hub.training.train_renderer import RendererTrainingConfig, train_renderer

logger = logging.getLogger("build_demo_assets")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="outputs/demo_assets", help="folder for the corpus and training runs")
    parser.add_argument("--corpus", default=None, help="an existing demo corpus (default: <work>/corpus)")
    parser.add_argument("--shards", default=None, help="its shards (default: <work>/shards)")
    parser.add_argument("--minutes", type=float, default=20.0, help="corpus length when it is built here")
    parser.add_argument("--a2e-from", default=None, help="a trained a2e folder to bundle instead of training")
    parser.add_argument("--renderer-from", default=None, help="a trained renderer folder to bundle instead of training")
    parser.add_argument("--a2e-epochs", type=int, default=120)
    parser.add_argument("--renderer-steps", type=int, default=1000)
    parser.add_argument("--speaker-seconds", type=float, default=15.0)
    parser.add_argument("--speaker-voice", default="en-us", help="voice of the clips the demo speaker is made of")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    work = Path(args.work)
    corpus = Path(args.corpus or work / "corpus")
    shards = Path(args.shards or work / "shards")

    # 1. corpus and shards
    if not (corpus / "corpus.json").exists():
        build_demo_corpus(corpus, minutes=args.minutes, workers=2)
    index = json.loads((corpus / "corpus.json").read_text())
    clips = {clip["clip_id"]: clip for clip in index["clips"]}
    videos = [corpus / clip["video"] for clip in index["clips"]]
    preprocess_clips(videos, shards, workers=2)

    # 2. and 3. the models
    a2e_dir = Path(args.a2e_from) if args.a2e_from else work / "a2e" / "best"
    if not a2e_dir.exists():
        train_a2e(A2ETrainingConfig(shards=str(shards), output_dir=str(work / "a2e"),
                                    splits=str(corpus / "corpus.json"), epochs=args.a2e_epochs))
    renderer_dir = Path(args.renderer_from) if args.renderer_from else work / "renderer" / "best"
    if not renderer_dir.exists():
        train_renderer(RendererTrainingConfig(shards=str(shards), output_dir=str(work / "renderer"),
                                              splits=str(corpus / "corpus.json"), max_steps=args.renderer_steps,
                                              epochs=10**6))
    renderer = MemFaceRenderer.from_pretrained(renderer_dir)

    # 4. the demo speaker, at the renderer's crop size
    picks = [corpus / clips[c]["video"] for c in index["splits"]["train"] if clips[c]["voice"] == args.speaker_voice]
    with tempfile.TemporaryDirectory(prefix="memface-demo-speaker-") as tmp:
        video = concatenate_videos(picks, args.speaker_seconds, Path(tmp) / "demo_speaker.mp4")
        result = preprocess_clip(video, Path(tmp) / "shards", layout=CropLayout(size=renderer.crop_size))
        speaker = SpeakerMemory.build(Path(tmp) / "shards" / result.clip_id, num_entries=300,
                                      name="memface demo speaker (synthetic: skimage astronaut photo + espeak-ng)")
        staging = Path(tmp) / "speaker"
        speaker.save_pretrained(staging)
        if DEMO_SPEAKER.exists():
            shutil.rmtree(DEMO_SPEAKER)
        shutil.copytree(staging, DEMO_SPEAKER)

    # 5. the pipeline
    pipeline = MemFacePipeline(MemFaceAudioToExpression.from_pretrained(a2e_dir), renderer)
    pipeline.save_pretrained(DEMO_PIPELINE, repo_id="memface-hub/memface-demo", training_data=(
        "memface_hub's synthetic demo corpus: skimage's public-domain astronaut photo animated by espeak-ng "
        f"speech ({index['total_seconds'] / 60:.0f} min, 4 voices × 3 rates, split by sentence; `memface demo-data`). "
        "Rebuilt from scratch by `python scripts/build_demo_assets.py`."))
    sizes = {path.relative_to(DEMO_PIPELINE.parent): path.stat().st_size
             for folder in (DEMO_PIPELINE, DEMO_SPEAKER) for path in folder.rglob("*") if path.is_file()}
    for path, size in sorted(sizes.items()):
        logger.info("%-48s %8.1f kB", path, size / 1e3)
    logger.info("total %.1f MB", sum(sizes.values()) / 1e6)
    return 0


if __name__ == "__main__":
    sys.exit(main())
