"""Regenerate the bundled demo weights and demo speaker (``memface_hub/assets/``) from scratch.

    python scripts/build_demo_assets.py                       # every stage, reusing finished ones
    python scripts/build_demo_assets.py --a2e-from RUN/best --renderer-from RUN/best   # reuse trained models
    python scripts/build_demo_assets.py --renderer-from runs/renderer_real/best --renderer-corpus ../data/corpus
    python scripts/build_demo_assets.py --a2e-from memface_hub/assets/demo_pipeline/a2e \
        --renderer-from runs/renderer_256w/best --renderer-corpus ../data/corpus \
        --speaker-clips ../data/corpus/synthetic/astronaut/clips/*.mp4    # the bundled crop-256 assets
    memface train-a2e --shards ../data/corpus_v3/shards --splits ../data/corpus_v3/corpus.json --frontend mel \
        --epochs 150 --real-repeat 1 --real-augment 6 --seed 1 --out runs/a2e_v3_aug6_s1   # the bundled a2e, then:
    python scripts/build_demo_assets.py --a2e-from runs/a2e_v3_aug6_s1/best --a2e-corpus ../data/corpus_v3 \
        --renderer-from COPY_OF_THE_BUNDLED_RENDERER --renderer-corpus ../data/corpus --keep-speaker \
        --evaluation docs/results/real_people.json

``--renderer-corpus`` names the multi-person corpus (``memface build-corpus``) the renderer was trained
on: the card then lists its training people and the source lines of the shared data's PROVENANCE.md.

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
import fnmatch
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
DEMO_CORPUS_SECONDS = 20 * 60        # the demo corpus's length when it is not rebuilt (the card quotes it)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="outputs/demo_assets", help="folder for the corpus and training runs")
    parser.add_argument("--corpus", default=None, help="an existing demo corpus (default: <work>/corpus)")
    parser.add_argument("--shards", default=None, help="its shards (default: <work>/shards)")
    parser.add_argument("--minutes", type=float, default=20.0, help="corpus length when it is built here")
    parser.add_argument("--a2e-from", default=None, help="a trained a2e folder to bundle instead of training")
    parser.add_argument("--renderer-from", default=None, help="a trained renderer folder to bundle instead of training")
    parser.add_argument("--renderer-corpus", default=None,
                        help="the multi-person corpus the --renderer-from model was trained on (for the card)")
    parser.add_argument("--a2e-corpus", default=None,
                        help="the multi-person corpus the --a2e-from model was trained on (for the card)")
    parser.add_argument("--keep-speaker", action="store_true",
                        help="keep the bundled demo speaker (with --a2e-from and --renderer-from no corpus is built)")
    parser.add_argument("--evaluation", default=None, help="a results JSON (docs/results/real_people.json) whose "
                        "summary goes into the card's evaluation section")
    parser.add_argument("--a2e-epochs", type=int, default=120)
    parser.add_argument("--renderer-steps", type=int, default=1000)
    parser.add_argument("--speaker-seconds", type=float, default=15.0)
    parser.add_argument("--speaker-voice", default="en-us", help="voice of the clips the demo speaker is made of")
    parser.add_argument("--speaker-clips", nargs="+", default=None,
                        help="videos of the astronaut to build the demo speaker from instead of the demo corpus's "
                             "(e.g. build-corpus's ../data/corpus/synthetic/astronaut/clips/*.mp4)")
    return parser.parse_args(argv)


def build_demo_speaker(clips: list[Path], seconds: float, crop_size: int) -> None:
    """``seconds`` of the given demo-corpus clips joined, preprocessed at ``crop_size``, Alg. 1 memory →
    ``memface_hub/assets/demo_speaker``."""
    with tempfile.TemporaryDirectory(prefix="memface-demo-speaker-") as tmp:
        video = concatenate_videos(clips, seconds, Path(tmp) / "demo_speaker.mp4")
        result = preprocess_clip(video, Path(tmp) / "shards", layout=CropLayout(size=crop_size))
        speaker = SpeakerMemory.build(Path(tmp) / "shards" / result.clip_id, num_entries=300,
                                      name="memface demo speaker (synthetic: skimage astronaut photo + espeak-ng)")
        staging = Path(tmp) / "speaker"
        speaker.save_pretrained(staging)
        if DEMO_SPEAKER.exists():
            shutil.rmtree(DEMO_SPEAKER)
        shutil.copytree(staging, DEMO_SPEAKER)


def evaluation_card(path: Path) -> str:
    """The card's evaluation section from a real-people results JSON (scripts/real_people_eval.py)."""
    result = json.loads(path.read_text())
    lines = [f"Held-out real people (never seen in training), adapted on the first min(15 s, 70 %) of their own "
             f"clip, generated from the rest of its sound (`{result.get('command', 'scripts/real_people_eval.py')}`, "
             f"commit `{result.get('git_commit')}`):", "",
             "| adaptation | people | lower-face ΔE ↓ | mouth sharpness ratio (1 ideal) | lip correlation ↑ |",
             "|---|---|---|---|---|"]
    config = result.get("config", {})
    labels = {"own_frames_before_cut": "reference: the person's real frames before the cut",
              "finetune_60s": f"fine-tuned: renderer {config.get('finetune_seconds', 60):g} s"
                              + (f", a2e {config['a2e_finetune_seconds']:g} s" if config.get("a2e_finetune_seconds")
                                 else "")}
    for variant, figures in result.get("summary", {}).items():
        lines.append(f"| {labels.get(variant, variant)} | {figures['people']} | {figures['delta_e']:.2f} | "
                     f"{figures['sharpness_ratio']:.2f} | "
                     f"{figures['lip_corr_0']:.2f} |")
    lines += ["", "Definitions: `docs/EVALUATION.md` of the memface_hub repository, \"Real people\"."]
    return "\n".join(lines)


def provenance_rows(corpus: Path, files: set[str]) -> tuple[list[str], str]:
    """The table rows of the real clips' PROVENANCE.md naming any of ``files``, and the first paragraph of
    the portraits' PROVENANCE.md (the shared data folders the corpus was built from)."""
    index = json.loads((corpus / "corpus.json").read_text())
    clips = {Path(info["video"]).parent for info in index["clips"].values() if info["source"] == "real"}
    rows, portraits = [], ""
    for folder in sorted(clips):
        readme = folder / "PROVENANCE.md"
        for line in readme.read_text().splitlines() if readme.is_file() else []:
            if not line.startswith("| `"):
                continue
            patterns = [part.strip().strip("`").replace("{1,2}", "*").replace("{1..5}", "*")
                        for part in line.split("|")[1].split(",")]
            if any(fnmatch.fnmatch(name, pattern) for pattern in patterns for name in files):
                rows.append(line)
        readme = folder.parent / "portraits" / "PROVENANCE.md"
        if readme.is_file():
            paragraphs = [block for block in readme.read_text().split("\n\n") if not block.startswith("#")]
            portraits = " ".join(paragraphs[0].split()) if paragraphs else ""
    return rows, portraits


def corpus_card(corpus: Path, key: str = "splits") -> str:
    """Training-data text for a model trained on the multi-person corpus in ``corpus`` (its ``key`` split
    object's ``train`` list: ``a2e_splits`` for an a2e model where the corpus has one)."""
    index = json.loads((corpus / "corpus.json").read_text())
    train = [info for clip, info in index["clips"].items() if clip in set(index.get(key, index["splits"])["train"])]
    if key == "a2e_splits":          # a2e training skips the clips without sound
        train = [info for info in train if info.get("has_audio", True)]
    real = sorted({Path(info["video"]).name for info in train if info["source"] == "real"})
    people = {info["person"] for info in train}
    synthetic = sorted({info["person"] for info in train if info["source"] == "synthetic"})
    seconds = sum(info["frames"] for info in train) / 25.0
    lines = [f"the multi-person corpus (`memface build-corpus`), training split only: {len(people)} people, "
             f"{len(real)} real clips and {len(train) - len(real)} synthetic clips ({seconds / 60:.1f} min); "
             f"the split is by person (`memface_hub/data/real_people.json`), no validation or test person is "
             f"in it. Synthetic clips: portrait photos made to speak espeak-ng sentences"
             + (" in random speaking styles" if any("style" in info for info in train) else "")
             + f" ({', '.join(synthetic)}). "
             "Real clips used: " + ", ".join(f"`{name}`" for name in real) + ". Their sources "
             "(from the shared data's PROVENANCE.md):", "",
             "| files | source (repository @ commit, path) | licence of the repository / what it says "
             "| seconds, sound |",
             "|---|---|---|---|"]
    rows, portraits = provenance_rows(corpus, set(real))
    lines += rows
    if portraits:
        lines += ["", f"Portrait photos: {portraits}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    work = Path(args.work)
    corpus = Path(args.corpus or work / "corpus")
    shards = Path(args.shards or work / "shards")

    keep_speaker = args.keep_speaker and DEMO_SPEAKER.is_dir()
    # 1. corpus and shards (for models trained here and for the demo speaker)
    index = {"total_seconds": DEMO_CORPUS_SECONDS}
    if not ((keep_speaker or args.speaker_clips) and args.a2e_from and args.renderer_from):
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

    # 4. the demo speaker, at the renderer's crop size (kept with --keep-speaker when the crop size matches)
    if keep_speaker and SpeakerMemory.from_pretrained(DEMO_SPEAKER).layout.size != renderer.crop_size:
        logger.warning("the bundled demo speaker has another crop size than the renderer: rebuilding it")
        keep_speaker = False
    if args.speaker_clips:
        build_demo_speaker(sorted(Path(clip) for clip in args.speaker_clips), args.speaker_seconds, renderer.crop_size)
    elif not keep_speaker:
        picks = [corpus / clips[c]["video"] for c in index["splits"]["train"]
                 if clips[c]["voice"] == args.speaker_voice]
        build_demo_speaker(picks, args.speaker_seconds, renderer.crop_size)

    # 5. the pipeline
    pipeline = MemFacePipeline(MemFaceAudioToExpression.from_pretrained(a2e_dir), renderer)
    demo_corpus = ("memface_hub's synthetic demo corpus: skimage's public-domain astronaut photo animated by espeak-ng "
                   f"speech ({index['total_seconds'] / 60:.0f} min, 4 voices × 3 rates, split by sentence; "
                   "`memface demo-data`).")
    parts = []
    for model, folder, key in (("a2e", args.a2e_corpus, "a2e_splits"), ("renderer", args.renderer_corpus, "splits")):
        parts.append(f"**{model}**: " + (corpus_card(Path(folder), key) if folder else demo_corpus))
    parts.append("The demo speaker is synthetic (the astronaut photo); no memory of a real person is bundled. "
                 "Rebuilt by `python scripts/build_demo_assets.py` (see its docstring for the options used).")
    pipeline.save_pretrained(DEMO_PIPELINE, repo_id="memface-hub/memface-demo", training_data="\n\n".join(parts),
                             evaluation=evaluation_card(Path(args.evaluation)) if args.evaluation else None)
    sizes = {path.relative_to(DEMO_PIPELINE.parent): path.stat().st_size
             for folder in (DEMO_PIPELINE, DEMO_SPEAKER) for path in folder.rglob("*") if path.is_file()}
    for path, size in sorted(sizes.items()):
        logger.info("%-48s %8.1f kB", path, size / 1e3)
    logger.info("total %.1f MB", sum(sizes.values()) / 1e6)
    return 0


if __name__ == "__main__":
    sys.exit(main())
