"""The ``memface`` command.

    memface demo-data --out data/demo            # synthetic talking-face corpus (~20 min)
    memface preprocess VIDEO... --out shards/    # clips → shards (resumable)
    memface fit-mouth-model shards/ --out mouth_model.safetensors
    memface demo                                 # a talking video from the bundled demo weights, offline
    memface generate --text "Hello there." --speaker demo --out hello.mp4
    memface adapt VIDEO --out my_speaker/        # a new speaker from 15-60 s of video
    memface push my_speaker/ --repo me/my-speaker --license cc-by-4.0 --consent "..."
    memface pull me/my-speaker --out my_speaker/ ; memface list --author me
    memface verify talking.mp4                   # watermark + C2PA credentials of a video (exit 0: marked)
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import signal
import sys
import threading
from pathlib import Path

from .errors import MemFaceInputError

logger = logging.getLogger("memface_hub.cli")


def positive_int(text: str) -> int:
    """argparse type: an integer ≥ 1 (a count or a budget)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (seconds, a rate); ``nan`` and ``inf`` are refused."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
    return value


def _add_preprocess(commands) -> None:
    parser = commands.add_parser(
        "preprocess", help="track, align and crop videos into clip shards",
        description="Decode each video at 25 fps, track the face, fit poses, compute canonical mouth "
                    "vertices and aligned crops, extract 16 kHz audio, and write one shard folder per clip "
                    "under --out. Finished clips are skipped, so an interrupted run can be resumed. Under "
                    "`accelerate launch` every process takes its own share of the clip list.")
    parser.add_argument("videos", nargs="+", help="video files (any container ffmpeg reads)")
    parser.add_argument("--out", required=True, help="folder that receives one shard folder per clip")
    parser.add_argument("--workers", type=positive_int, default=1, help="parallel worker processes (default: 1)")
    parser.add_argument("--crop-size", type=positive_int, default=256,
                        help="side of the aligned face crop in pixels (default: 256)")
    parser.add_argument("--allow-silent", action="store_true",
                        help="accept videos without an audio stream (e.g. for speaker memories only)")
    parser.add_argument("--max-seconds", type=positive_float, default=None, help="refuse clips longer than this")
    parser.set_defaults(handler=_run_preprocess)


def _run_preprocess(args) -> int:
    from .data.preprocess import preprocess_clips, summarise
    from .face.crop import CropLayout

    results = preprocess_clips(args.videos, args.out, workers=args.workers, layout=CropLayout(size=args.crop_size),
                               require_audio=not args.allow_silent, max_seconds=args.max_seconds)
    for result in results:
        if result.status == "done":
            logger.info("%s: %d of %d frames tracked (%d usable)", result.clip_id, result.frames_tracked,
                        result.frames, result.frames_valid)
    summary = summarise(results)
    logger.info("shards in %s: %d done, %d skipped (already finished), %d failed; frames tracked %d, dropped %d",
                Path(args.out).resolve(), summary["clips_done"], summary["clips_skipped"], summary["clips_failed"],
                summary["frames_tracked"], summary["frames_dropped"])
    return 1 if summary["clips_failed"] else 0


def _add_demo_data(commands) -> None:
    parser = commands.add_parser(
        "demo-data", help="build the synthetic demo corpus",
        description="Make a real face photo speak TTS sentences (espeak-ng) with known phoneme timings: "
                    "mp4 clips with audio plus a timeline JSON each, split by sentence into train/val/test "
                    "(listed in corpus.json). Resumable; deterministic for a seed.")
    parser.add_argument("--out", required=True, help="corpus folder")
    parser.add_argument("--minutes", type=positive_float, default=20.0, help="approximate total length (default: 20)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--photo", default=None, help="face photo to animate (default: skimage's astronaut)")
    parser.add_argument("--voices", default=None,
                        help="comma-separated espeak-ng voices (default: en-us,en-us+f3,en-gb,en-us+m3)")
    parser.add_argument("--workers", type=positive_int, default=1, help="parallel worker processes (default: 1)")
    parser.set_defaults(handler=_run_demo_data)


def _run_demo_data(args) -> int:
    from .data.demo_corpus import DEFAULT_VOICES, build_demo_corpus

    voices = tuple(v.strip() for v in args.voices.split(",")) if args.voices else DEFAULT_VOICES
    index = build_demo_corpus(args.out, minutes=args.minutes, seed=args.seed, photo=args.photo,
                              voices=voices, workers=args.workers)
    logger.info("demo corpus in %s: %d clips, %.1f s (train %d, val %d, test %d)", Path(args.out).resolve(),
                len(index["clips"]), index["total_seconds"],
                *(len(index["splits"][s]) for s in ("train", "val", "test")))
    return 0


def _add_build_corpus(commands) -> None:
    parser = commands.add_parser(
        "build-corpus", help="build the multi-person corpus (real clips + synthetic faces), split by person",
        description="Preprocess real talking clips and synthetic clips of face photos (made to speak TTS "
                    "sentences) into shards under OUT/shards, and write OUT/corpus.json with the split by "
                    "person from a people file (default: the committed real_people.json). Clips not in the "
                    "people file, or unusable, are refused with a reason; the rest go on. Resumable.")
    parser.add_argument("--out", required=True, help="corpus folder")
    parser.add_argument("--real", default=None, help="folder of real clips (e.g. ../shared/real_clips)")
    parser.add_argument("--portraits", default=None, help="folder of face photos (e.g. ../shared/portraits)")
    parser.add_argument("--people", default=None, help="people file: who is in which clip, and the split")
    parser.add_argument("--synthetic-minutes", type=positive_float, default=0.5,
                        help="minutes of synthetic speech per face photo (default: 0.5)")
    parser.add_argument("--no-astronaut", action="store_true", help="leave out skimage's astronaut photo")
    parser.add_argument("--styles", action=argparse.BooleanOptionalAction, default=True,
                        help="speaking styles, rates, pitches and a held-out voice per synthetic clip (demo corpus "
                             "v3, the default); --no-styles renders the single-style v2 clips")
    parser.add_argument("--workers", type=positive_int, default=1, help="parallel worker processes (default: 1)")
    parser.set_defaults(handler=_run_build_corpus)


def _run_build_corpus(args) -> int:
    from .data.corpus import build_corpus

    if args.real is None and args.portraits is None and args.no_astronaut:
        raise MemFaceInputError("build-corpus", "nothing to build: give --real and/or --portraits")
    report = build_corpus(args.out, real_clips=args.real, portraits=args.portraits, people_file=args.people,
                          synthetic_minutes=args.synthetic_minutes, include_astronaut=not args.no_astronaut,
                          workers=args.workers, styles=args.styles)
    for clip_id, info in report.index["clips"].items():
        logger.info("%s (%s, %s): %d of %d frames tracked", clip_id, info["person"], info["split"],
                    info["frames_tracked"], info["frames"])
    return 1 if report.refused else 0


def _add_fit_mouth_model(commands) -> None:
    parser = commands.add_parser(
        "fit-mouth-model", help="fit the linear mouth model (PCA) on preprocessed shards",
        description="Uncentred PCA of canonical mouth-vertex deltas from each clip's neutral mouth; "
                    "verts(e) = neutral + B e.")
    parser.add_argument("shards", help="folder of shard folders (the --out of preprocess)")
    parser.add_argument("--out", required=True, help="output .safetensors file")
    parser.add_argument("--components", type=positive_int, default=16, help="number of components (default: 16)")
    parser.set_defaults(handler=_run_fit_mouth_model)


def _run_fit_mouth_model(args) -> int:
    from .io.shards import fit_mouth_model

    model = fit_mouth_model(args.shards, num_components=args.components)
    model.save(args.out)
    logger.info("mouth model with %d components (%.2f%% of variance) written to %s", model.num_components,
                100 * float(model.explained_variance.sum()), Path(args.out).resolve())
    return 0


DEMO_SENTENCE = ("Hello! I am a synthetic talking face made by memface hub. "
                 "My mouth moves with the words, but I am not a real recording.")


def _add_demo(commands) -> None:
    parser = commands.add_parser(
        "demo", help="render a talking video with the bundled demo weights and speaker (offline)",
        description="Speaks a built-in sentence with espeak-ng and renders it with the bundled demo pipeline and "
                    "demo speaker: no download, no GPU. Writes <out>/demo.mp4 and a PNG strip of frames.")
    parser.add_argument("--out", default="outputs/demo", help="output folder (default: outputs/demo)")
    parser.add_argument("--text", default=DEMO_SENTENCE, help="what the demo speaker says")
    parser.set_defaults(handler=_run_demo)


def _run_demo(args) -> int:
    from .pipeline import MemFacePipeline, fast_dtype, load_speaker

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pipe = MemFacePipeline.from_pretrained(torch_dtype=fast_dtype("cpu"))
    result = pipe.generate_to_file(pipe.speak(args.text), load_speaker("demo"), out / "demo.mp4", progress=True)
    strip = _frame_strip(out / "demo.mp4", out / "demo_strip.png")
    print(json.dumps({"video": str(result.path.resolve()), "strip": str(strip.resolve()),
                      "frames": result.num_frames, "seconds": round(result.num_frames / result.fps, 2),
                      "generation_fps": round(result.num_frames / result.timings["total"], 1)}, indent=1))
    return 0


def _frame_strip(video: Path, out: Path, count: int = 6, height: int = 160) -> Path:
    """A PNG row of ``count`` evenly spaced frames of ``video``."""
    import cv2
    import numpy as np

    from .io.video import read_frames

    frames = read_frames(video)
    picks = np.linspace(0, len(frames) - 1, count).round().astype(int)
    row = np.concatenate([cv2.resize(frames[i], (round(frames[i].shape[1] * height / frames[i].shape[0]), height),
                                     interpolation=cv2.INTER_AREA) for i in picks], axis=1)
    cv2.imwrite(str(out), cv2.cvtColor(row, cv2.COLOR_RGB2BGR))
    return out


def _add_generate(commands) -> None:
    parser = commands.add_parser(
        "generate", help="make a talking video from audio (or typed text) and a speaker memory",
        description="Audio → expressions (a2e) → projected mouth on the speaker's template frames → renderer "
                    "with the speaker's explicit memory → mp4 with the audio, labelled as synthetic. Streams in "
                    "chunks, so long audio needs no more memory than short audio.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--audio", help="speech audio (any file ffmpeg reads: wav, mp3, m4a, mp4, ...)")
    source.add_argument("--text", help="typed text, spoken with espeak-ng instead of --audio")
    parser.add_argument("--speaker", default="demo",
                        help="speaker memory: a folder, a Hub repo id, or 'demo' for the bundled one (default: demo)")
    parser.add_argument("--out", required=True, help="output mp4 (written atomically)")
    parser.add_argument("--model", default=None,
                        help="pipeline folder or Hub repo id (default: the bundled demo weights)")
    parser.add_argument("--voice", default="en-us", help="espeak-ng voice for --text (default: en-us)")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, mps (default: cpu)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                        help="the renderer's dtype; auto: bfloat16 where the device computes it natively (CPUs with "
                             "avx512-bf16 or AMX, recent GPUs), else float32 (default: auto)")
    parser.add_argument("--max-seconds", type=positive_float, default=900.0,
                        help="refuse audio longer than this many seconds (default: 900)")
    parser.add_argument("--c2pa-cert", default=None,
                        help="PEM certificate chain that signs the video's C2PA content credentials "
                             "(default: MEMFACE_C2PA_CERT; without one the video is watermarked but not signed)")
    parser.add_argument("--c2pa-key", default=None, help="its PEM private key (default: MEMFACE_C2PA_KEY)")
    parser.set_defaults(handler=_run_generate)


def _run_generate(args) -> int:
    import torch

    from .pipeline import MemFacePipeline, fast_dtype, load_speaker
    from .provenance import SigningKey

    out = Path(args.out)
    if out.suffix.lower() != ".mp4":
        raise MemFaceInputError(out, "the output must be an .mp4 file")
    if args.audio is not None and out.resolve() == Path(args.audio).resolve():
        raise MemFaceInputError(out, "is also the input audio; choose another output file")
    if (args.c2pa_cert is None) != (args.c2pa_key is None):
        raise MemFaceInputError("--c2pa-key" if args.c2pa_cert else "--c2pa-cert",
                                "missing; signing needs both --c2pa-cert and --c2pa-key")
    signing_key = SigningKey.from_files(args.c2pa_cert, args.c2pa_key) if args.c2pa_cert else SigningKey.from_env()
    dtype = fast_dtype(args.device) if args.dtype == "auto" else getattr(torch, args.dtype)
    pipe = MemFacePipeline.from_pretrained(args.model, device=args.device, torch_dtype=dtype,
                                           max_audio_seconds=args.max_seconds)
    audio = pipe.speak(args.text, voice=args.voice) if args.text is not None else args.audio
    speaker = load_speaker(args.speaker)
    result = pipe.generate_to_file(audio, speaker, out, progress=True, signing_key=signing_key)
    logger.info("wrote %s: %d frames (%.1f s) at %.1f frames/s", out, result.num_frames,
                result.num_frames / result.fps, result.num_frames / result.timings["total"])
    return 0


def _add_push(commands) -> None:
    parser = commands.add_parser(
        "push", help="upload a speaker memory (or a pipeline folder) to the Hub as its own repo",
        description="A speaker-memory folder (speaker.json) goes up with a card recording its license, consent "
                    "statement and source; a pipeline folder (model_index.json) goes up with its card. The token "
                    "comes from --token, HF_TOKEN or `hf auth login`, and is never stored by memface.")
    parser.add_argument("folder", help="speaker-memory folder or pipeline folder")
    parser.add_argument("--repo", required=True, help="Hub repo id, e.g. your-name/my-speaker")
    parser.add_argument("--license", default=None, help="license of the speaker memory (required for speakers), "
                                                         "e.g. cc-by-4.0")
    parser.add_argument("--consent", default=None,
                        help="consent statement of the person shown (required for speakers)")
    parser.add_argument("--source", default="", help="where the speaker's video comes from")
    parser.add_argument("--base-model", default=None, help="pipeline repo the speaker was made for")
    parser.add_argument("--private", action="store_true", help="create a pipeline repo as private "
                        "(speaker repos are private unless --public)")
    parser.add_argument("--public", action="store_true", help="create a speaker repo as public (default: private)")
    parser.add_argument("--gated", action="store_true",
                        help="speakers: visitors request access stating their purpose; you approve each by hand")
    parser.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN / the saved login)")
    parser.set_defaults(handler=_run_push)


def _run_push(args) -> int:
    from .pipeline import PIPELINE_INDEX, MemFacePipeline
    from .speaker import SPEAKER_FILE, SpeakerMemory

    folder = Path(args.folder)
    if (folder / SPEAKER_FILE).is_file():
        speaker = SpeakerMemory.from_pretrained(folder)
        url = speaker.push_to_hub(args.repo, private=not args.public, gated=args.gated, license=args.license or "",
                                  consent=args.consent or "", base_model=args.base_model,
                                  source_description=args.source, token=args.token)
    elif (folder / PIPELINE_INDEX).is_file():
        url = MemFacePipeline.from_pretrained(folder).push_to_hub(args.repo, private=args.private, token=args.token)
    else:
        raise MemFaceInputError(folder,
                                f"is neither a speaker memory ({SPEAKER_FILE}) nor a pipeline ({PIPELINE_INDEX})")
    print(url)
    return 0


def _add_pull(commands) -> None:
    parser = commands.add_parser(
        "pull", help="download a speaker memory (or a pipeline) from the Hub into a folder",
        description="Downloads only JSON, safetensors and the template video, validates everything, and writes "
                    "the folder atomically. Repos carrying pickle files are refused.")
    parser.add_argument("repo", help="Hub repo id")
    parser.add_argument("--out", required=True, help="destination folder")
    parser.add_argument("--revision", default=None, help="branch, tag or commit (default: main)")
    parser.add_argument("--token", default=None, help="Hub token for private repos")
    parser.set_defaults(handler=_run_pull)


def _run_pull(args) -> int:
    from .hub import hub_file_list
    from .pipeline import PIPELINE_INDEX, MemFacePipeline
    from .speaker import SPEAKER_FILE, SpeakerMemory

    files = hub_file_list(args.repo, revision=args.revision, token=args.token)   # None: offline or unreachable
    if files is None:                          # the local Hub cache only: whichever kind it holds
        for kind in (SpeakerMemory, MemFacePipeline):
            try:
                kind.from_pretrained(args.repo, revision=args.revision, token=args.token).save_pretrained(args.out)
                break
            except MemFaceInputError:
                continue
        else:
            raise MemFaceInputError(args.repo, "not in the local Hub cache, and the Hub is offline (HF_HUB_OFFLINE) "
                                    "or unreachable")
    elif SPEAKER_FILE in files:
        SpeakerMemory.from_pretrained(args.repo, revision=args.revision, token=args.token).save_pretrained(args.out)
    elif PIPELINE_INDEX in files:
        MemFacePipeline.from_pretrained(args.repo, revision=args.revision, token=args.token).save_pretrained(args.out)
    else:
        raise MemFaceInputError(args.repo, "is neither a memface speaker memory nor a memface pipeline")
    print(Path(args.out).resolve())
    return 0


def _add_list(commands) -> None:
    parser = commands.add_parser(
        "list", help="list speaker memories on the Hub (tag memface-speaker)",
        description="Lists model repos tagged memface-speaker, optionally only one author's.")
    parser.add_argument("--author", default=None, help="only this user's or organisation's speakers")
    parser.add_argument("--token", default=None, help="Hub token (to include your private speakers)")
    parser.set_defaults(handler=_run_list)


def _run_list(args) -> int:
    from .speaker import list_speakers

    for speaker in list_speakers(author=args.author, token=args.token):
        print(f"{speaker.repo_id}\tlicense={speaker.license or '?'}\tbase_model={speaker.base_model or '?'}")
    return 0


def _add_train_a2e(commands) -> None:
    from .training.configs import A2ETrainingConfig, add_config_arguments

    parser = commands.add_parser(
        "train-a2e", help="train the audio-to-expression model (accelerate: CPU, one or many GPUs)",
        description="Train MemFaceAudioToExpression on preprocessed shards with the losses of eq. 4 and the "
                    "alternating memory/model updates of supplement B.2. Runs unchanged under "
                    "`accelerate launch`. Writes <out>/best (save_pretrained), <out>/checkpoint (for --resume) "
                    "and <out>/trainer_state.json. The flags are the fields of "
                    "memface_hub.training.configs.A2ETrainingConfig.")
    add_config_arguments(parser, A2ETrainingConfig)
    parser.add_argument("--frontend", default="mel",
                        help="audio front end: mel (the offline default, chosen by the a2e ablation), phonemes, "
                             "phone_net, wav2vec2, deepspeech")
    parser.add_argument("--frontend-model", default=None,
                        help="Hub id or local path of the wav2vec2/deepspeech checkpoint, or a phone_net folder "
                             "(memface train-phone-net; default: the bundled one)")
    parser.set_defaults(handler=_run_train_a2e)


def _training_config(config_class, args, **given):
    """The training config of parsed flags; a value out of range is a one-line error naming the field."""
    from .training.configs import config_from_arguments

    try:
        return config_from_arguments(config_class, args, **given)
    except ValueError as err:
        raise MemFaceInputError("flags", str(err)) from None


def _run_train_a2e(args) -> int:
    from .training.configs import A2ETrainingConfig
    from .training.train_a2e import train_a2e

    frontend = {"name": args.frontend}
    if args.frontend_model:
        frontend["model_path" if args.frontend == "phone_net" else "model_name_or_path"] = args.frontend_model
    best = train_a2e(_training_config(A2ETrainingConfig, args, frontend=frontend))
    logger.info("best model: %s", Path(best).resolve())
    return 0


def _add_eval_a2e(commands) -> None:
    parser = commands.add_parser(
        "eval-a2e", help="evaluate an audio-to-expression model on held-out demo-corpus utterances",
        description="Mouth-vertex RMSE, bilabial closure, audio-visual offset and jitter in silence "
                    "(docs/EVALUATION.md) over a split of a demo corpus, or over a held-out group of a "
                    "multi-person corpus's synthetic clips (its a2e_splits: test_sentence, test_voice, "
                    "test_face); prints a table and writes JSON.")
    parser.add_argument("model", help="model folder or Hub id (from_pretrained)")
    parser.add_argument("--shards", required=True, help="folder of preprocessed shards of the corpus")
    parser.add_argument("--corpus", required=True, help="demo or multi-person corpus folder (with corpus.json)")
    parser.add_argument("--split", default="test",
                        help="split or held-out group to evaluate (default: test; e.g. test_voice)")
    parser.add_argument("--out", default=None, help="write the metrics to this JSON file")
    parser.set_defaults(handler=_run_eval_a2e)


def _run_eval_a2e(args) -> int:
    from .a2e import MemFaceAudioToExpression
    from .data.a2e_clips import read_splits
    from .evaluation.a2e_eval import evaluate_a2e

    model = MemFaceAudioToExpression.from_pretrained(args.model)
    splits = read_splits(Path(args.corpus) / "corpus.json", key="a2e_splits")
    if args.split not in splits:
        raise MemFaceInputError(f"--split={args.split}", f"not in the corpus (it has {', '.join(sorted(splits))})")
    clip_ids = splits[args.split]
    metrics = evaluate_a2e(model, args.shards, args.corpus, clip_ids, progress=True)
    for key, value in metrics.items():
        print(f"{key:<24} {value:.4f}" if isinstance(value, float) else f"{key:<24} {value}")
    if args.out:
        Path(args.out).write_text(json.dumps(metrics, indent=1))
    return 0


def _add_train_renderer(commands) -> None:
    from .training.configs import RendererTrainingConfig, add_config_arguments

    parser = commands.add_parser(
        "train-renderer", help="train the neural renderer with the explicit memory (accelerate)",
        description="Train MemFaceRenderer on preprocessed shards of one or many people: L1 + EfficientNet-Lite0 "
                    "perceptual + patch-GAN losses (eq. 6), each person's explicit memory bank chosen by Alg. 1 "
                    "from that person's frames, and the leakage rule (no frame reads its own entry or its ±2 "
                    "neighbours). With a corpus.json from build-corpus, batches are person-balanced. "
                    "Runs unchanged under `accelerate launch`. The flags are the fields of "
                    "memface_hub.training.configs.RendererTrainingConfig.")
    add_config_arguments(parser, RendererTrainingConfig)
    parser.set_defaults(handler=_run_train_renderer)


def _run_train_renderer(args) -> int:
    from .training.configs import RendererTrainingConfig
    from .training.train_renderer import train_renderer

    best = train_renderer(_training_config(RendererTrainingConfig, args))
    logger.info("best renderer: %s", Path(best).resolve())
    return 0


def _add_adapt(commands) -> None:
    parser = commands.add_parser(
        "adapt", help="adapt to a new speaker from 15-60 s of video (speaker memory + optional fine-tuning)",
        description="Preprocess the video (sound optional), build the speaker's explicit memory (Alg. 1) into "
                    "--out, and, with --renderer and a step or time budget, fine-tune the renderer on the clip "
                    "and store the change as renderer_delta.safetensors beside the memory. With an a2e budget and "
                    "speech in the video, the a2e model is fine-tuned on the speaker's lips too "
                    "(a2e_delta.safetensors, kept only when it lowers the mouth error on the video's last 20 %).")
    parser.add_argument("video", help="15-60 s video of one person (only footage of people who agreed to it)")
    parser.add_argument("--out", required=True, help="speaker-memory folder to write")
    parser.add_argument("--name", default=None, help="speaker name stored in speaker.json (default: file name)")
    parser.add_argument("--entries", type=positive_int, default=300, help="memory entries N (default: 300)")
    parser.add_argument("--renderer", default=None, help="renderer folder or Hub id to fine-tune (optional)")
    parser.add_argument("--finetune-steps", type=positive_int, default=None, help="fine-tuning step budget")
    parser.add_argument("--finetune-seconds", type=positive_float, default=None, help="fine-tuning time budget")
    parser.add_argument("--a2e", default=None,
                        help="a2e model folder or Hub id to adapt (default: the bundled demo pipeline's a2e)")
    parser.add_argument("--a2e-finetune-steps", type=positive_int, default=None,
                        help="a2e fine-tuning step budget (needs speech in the video)")
    parser.add_argument("--a2e-finetune-seconds", type=positive_float, default=None,
                        help="a2e fine-tuning time budget (needs speech in the video)")
    parser.add_argument("--no-articulation-gain", action="store_true",
                        help="do not measure the speaker's articulation gain (how much wider their lips move than "
                             "the a2e model predicts from their speech; generation scales the motion by it)")
    parser.add_argument("--max-seconds", type=positive_float, default=60.0, help="refuse longer videos (default: 60)")
    parser.add_argument("--max-resolution", type=positive_int, default=1080,
                        help="scale larger videos down to this many lines (short side; 1080: a 4K video is stored "
                             "at 1920x1080), which is also the size of the videos generated with it (default: 1080)")
    parser.set_defaults(handler=_run_adapt)


def _run_adapt(args) -> int:
    from .training.adapt import adapt_speaker

    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise MemFaceInputError(args.out, "is a file; --out must be a folder for the speaker memory")

    result = adapt_speaker(args.video, args.out, name=args.name, entries=args.entries, renderer=args.renderer,
                           finetune_steps=args.finetune_steps, finetune_seconds=args.finetune_seconds,
                           max_seconds=args.max_seconds, max_short_side=args.max_resolution, a2e=args.a2e,
                           a2e_finetune_steps=args.a2e_finetune_steps, a2e_finetune_seconds=args.a2e_finetune_seconds,
                           articulation=not args.no_articulation_gain)
    print(json.dumps({"speaker": str(Path(result.speaker_dir).resolve()),
                      "memory_seconds": round(result.memory_seconds, 2),
                      "finetune_seconds": round(result.finetune_seconds, 2),
                      "finetune_steps": result.finetune_steps,
                      "a2e_finetune_seconds": round(result.a2e_finetune_seconds, 2),
                      "a2e_finetune_steps": result.a2e_finetune_steps, "a2e_adapted": result.a2e_adapted}, indent=1))
    return 0


VERIFY_EXIT_CODES = {0: "marked as generated (watermark found, or valid C2PA credentials declaring it AI-generated), "
                        "and no invalid credentials",
                     1: "no provenance found: no watermark and no valid AI-generated C2PA credentials",
                     2: "bad input (missing, empty or undecodable file, bad flag): a one-line error",
                     3: "C2PA credentials present but invalid (the file was changed after signing, or a bad "
                        "signature)"}


def _add_verify(commands) -> None:
    parser = commands.add_parser(
        "verify", help="check a video for the memface watermark and C2PA content credentials",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Reports (1) whether the invisible watermark every memface video carries is in the frames "
                    "(a majority vote over frames; survives re-encoding and scaling), with its confidence, and (2) "
                    "whether the file holds a C2PA manifest, whether it is valid, and its assertions.\n\nexit "
                    "codes:\n" + "\n".join(f"  {code}  {meaning}" for code, meaning in VERIFY_EXIT_CODES.items()))
    parser.add_argument("video", help="video file (any container ffmpeg reads)")
    parser.add_argument("--max-frames", type=positive_int, default=250,
                        help="read the watermark from the first N frames (default: 250)")
    parser.add_argument("--trust-anchors", default=None,
                        help="PEM file of CA certificates to trust: a valid manifest signed under one is 'Trusted'")
    parser.add_argument("--json", action="store_true", help="print the full report as JSON")
    parser.set_defaults(handler=_run_verify)


def _run_verify(args) -> int:
    from .provenance import verify_video

    report = verify_video(args.video, max_frames=args.max_frames, trust_anchors=args.trust_anchors)
    mark, c2pa = report.watermark, report.credentials
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        print(f"watermark: {'found' if mark.detected else 'not found'} ({mark.agreeing_bits}/64 bits agree, "
              f"confidence {mark.confidence:.6f}, p = {mark.p_value:.1e}; {mark.frames} frames, "
              f"{mark.frames_detected:.0%} of them alone)")
        if c2pa.state == "unavailable":
            print("C2PA: not checked (c2pa-python is not installed: pip install 'memface_hub[provenance]')")
        elif c2pa.state == "unsupported":
            print("C2PA: not possible in this container (no manifest)")
        elif not c2pa.present:
            print("C2PA: no manifest")
        else:
            sources = ", ".join(f"{a.get('action')} {str(a.get('digitalSourceType', '')).rsplit('/', 1)[-1]}".strip()
                                for a in c2pa.actions) or "none"
            signer = ", ".join(str(v) for v in c2pa.signer.values()) or "unknown"
            print(f"C2PA: manifest {c2pa.state}{' (' + ', '.join(c2pa.failures) + ')' if c2pa.failures else ''}; "
                  f"AI-generated: {'yes' if c2pa.ai_generated else 'no'}; actions: {sources}; signer: {signer}; "
                  f"assertions: {', '.join(c2pa.assertions) or 'none'}")
    if c2pa.present and not c2pa.valid:
        return 3
    return 0 if report.generated else 1


def _add_train_phone_net(commands) -> None:
    parser = commands.add_parser(
        "train-phone-net", help="train the learned phone-posterior audio front end (phone_net) on TTS audio",
        description="Train the phone_net front end on a corpus's synthetic clips (espeak-ng phoneme timings as "
                    "labels, augmented with noise, reverberation, speed/pitch and band-limiting); the test "
                    "sentences, the held-out voice and validation/test faces are never heard. Writes OUT/best "
                    "(copy it to memface_hub/assets/phone_net to bundle it). Resumable.")
    parser.add_argument("--corpus", required=True, help="a multi-person corpus (memface build-corpus) or demo corpus")
    parser.add_argument("--out", required=True, help="run folder")
    parser.add_argument("--epochs", type=positive_int, default=30, help="epochs (default: 30)")
    parser.add_argument("--steps-per-epoch", type=positive_int, default=60,
                        help="steps of 24 random 2.56 s crops per epoch (default: 60)")
    parser.add_argument("--augment-copies", type=int, default=3, help="augmented copies per clip (default: 3)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.set_defaults(handler=_run_train_phone_net)


def _run_train_phone_net(args) -> int:
    from .training.train_phone_net import PhoneNetTrainingConfig, train_phone_net

    if args.augment_copies < 0:
        raise MemFaceInputError(f"--augment-copies={args.augment_copies}", "must be >= 0")
    best = train_phone_net(PhoneNetTrainingConfig(corpus=args.corpus, output_dir=args.out, epochs=args.epochs,
                                                  steps_per_epoch=args.steps_per_epoch,
                                                  augment_copies=args.augment_copies, seed=args.seed))
    logger.info("best phone_net weights in %s", best)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memface", description="MemFace talking-face generation tools.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_demo, _add_generate, _add_adapt, _add_push, _add_pull, _add_list, _add_demo_data,
                _add_preprocess, _add_build_corpus, _add_fit_mouth_model, _add_train_a2e, _add_eval_a2e,
                _add_train_renderer, _add_train_phone_net, _add_verify):
        add(commands)
    return parser


def _terminate(signum, frame) -> None:
    """SIGTERM ends the command like Ctrl-C does: staging folders and temporary files are cleaned up by the
    ``finally`` blocks that own them, and what was already written stays as it was."""
    raise SystemExit(128 + signum)


def _redeliver_swallowed_exit(unraisable) -> None:
    """``sys.unraisablehook``: a SIGTERM that landed inside a finalizer (a generator or temporary folder being
    collected) raised its SystemExit where Python ignores exceptions; deliver the signal again."""
    if isinstance(unraisable.exc_value, SystemExit) and unraisable.exc_value.code == 128 + signal.SIGTERM:
        signal.raise_signal(signal.SIGTERM)
        return
    sys.__unraisablehook__(unraisable)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
        sys.unraisablehook = _redeliver_swallowed_exit
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("accelerate", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError

    try:
        return args.handler(args)
    except (MemFaceInputError, FileNotFoundError, HFValidationError, HfHubHTTPError, LocalEntryNotFoundError) as err:
        message = " ".join(str(err).split())
        print(f"memface {args.command}: error: {message}", file=sys.stderr)
        return 2
    except OSError as err:          # the machine said no (disk full, read-only, permissions): one line, no traceback
        where = f"{err.filename}: " if err.filename else ""
        print(f"memface {args.command}: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
