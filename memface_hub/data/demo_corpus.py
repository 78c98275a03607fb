"""The synthetic demo corpus: a real face photo made to speak TTS sentences, with known truth.

For each (sentence, voice, rate): espeak-ng speech with phoneme timings → coarticulated viseme
schedule (:mod:`.visemes`) → the photo animated frame by frame (:class:`.FaceAnimator`, with
blinks and a small head motion; with ``styles=True``, corpus version 3, each clip also has its own
:class:`.SpeakingStyle`, speech rate and pitch, so one sentence has many valid mouth motions) →
``clips/<clip_id>.mp4`` (H.264 + AAC, labelled synthetic) and ``clips/<clip_id>.json`` (text, voice,
phoneme and word timeline, per-frame schedule). The split is by sentence (no test sentence is ever
heard in training, with any voice); ``corpus.json`` lists it. Everything but espeak's own
sub-millisecond jitter is deterministic for a seed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.signal import resample_poly
from tqdm.auto import tqdm

from ..arrays_io import write_text_atomic
from ..audio.tts import synthesize
from ..errors import MemFaceInputError
from ..face.landmarks import CHIN
from ..face.tracker import FaceTracker
from ..io.audio import AUDIO_SAMPLE_RATE
from ..io.video import DEFAULT_FPS, SYNTHETIC_LABEL, VideoWriter
from ..parallel import limit_worker_threads
from .face_animator import FaceAnimator, HeadMotion
from .sentences import corpus_sentences, split_sentences
from .speaking_style import NEUTRAL_STYLE, SpeakingStyle, apply_style, draw_style, draw_voice
from .visemes import viseme_schedule

logger = logging.getLogger(__name__)

CORPUS_FORMAT = "memface-demo-corpus"
# Version 2: bilabial closures no longer swallow short neighbouring vowels, coarticulation
# smoothing 30 ms (was 40), and 15 % of the sentences held out for test (was 10 %).
# Version 3 (``styles=True``): a speaking style, rate and pitch drawn per clip; voices that speak
# only test sentences (held out).
CORPUS_VERSION = 2
STYLED_CORPUS_VERSION = 3
VAL_FRACTION = 0.1
TEST_FRACTION = 0.15
DEFAULT_VOICES = ("en-us", "en-us+f3", "en-gb", "en-us+m3")
DEFAULT_RATES = (140, 160, 180)
# Corpus v3: more voices (accents and espeak-ng's voice variants), and one heard only on test sentences.
STYLED_VOICES = ("en-us", "en-us+f3", "en-gb", "en-us+m3", "en-gb-scotland+f2", "en-us-nyc+m5",
                 "en-029+klatt2", "en-gb-x-rp+f4")
HELD_OUT_VOICES = ("en-gb-x-gbclan+m2",)
PAD_SECONDS = 0.35          # silence before and after each sentence
TARGET_FACE_HEIGHT = 210    # pixels, forehead to chin, after upscaling the photo
SPLITS = ("train", "val", "test")
# espeak-ng speaks faster than its nominal words-per-minute rate: measured on the default corpus,
# duration ≈ 0.76 · words · 60 / rate (+ the padding).
SPEECH_RATE_FACTOR = 0.76


class CorpusSettingsError(MemFaceInputError):
    """The output folder already holds a corpus built with other settings (never mixed, never overwritten)."""


@dataclass(frozen=True)
class ClipPlan:
    """One clip to render."""

    clip_id: str
    split: str
    text: str
    voice: str
    rate: int
    seed: int
    pitch: int | None = None                 # espeak-ng pitch (None: the voice's default)
    style: SpeakingStyle | None = None       # None: the neutral style (corpus v2)
    held_out_voice: bool = False             # a voice heard only on test sentences


def _voice_tag(voice: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "", voice)


def plan_corpus(minutes: float = 20.0, seed: int = 0, voices: Sequence[str] = DEFAULT_VOICES,
                rates: Sequence[int] = DEFAULT_RATES, num_grid: int = 200, styles: bool = False,
                style_seed: int = 0, held_out_voices: Sequence[str] = (), rotation: int = 0) -> list[ClipPlan]:
    """Choose clips until about ``minutes`` of speech; the split is by sentence.

    Every sentence is planned once per voice (rates drawn per clip), in a seeded order that
    starts with one clip of each split so that even a tiny corpus has train, val and test.

    With ``styles`` (corpus v3) each clip draws a speaking style, rate and pitch from a generator
    seeded by ``(seed, style_seed)``: faces built with one ``seed`` and their own ``style_seed`` speak
    the same sentences with the same split, each in other styles (one sentence, many motions). Every
    planned test sentence is also spoken by each of ``held_out_voices`` (heard in no other split).
    ``rotation`` starts the seeded order that many candidates later (after the first clip of each
    split): faces built with overlapping rotations share some sentences and add others.
    """
    if minutes <= 0:
        raise MemFaceInputError(f"minutes={minutes}", "must be positive")
    if not voices or not rates:
        raise MemFaceInputError("voices/rates", "need at least one voice and one rate")
    sentences = corpus_sentences(num_grid=num_grid, seed=seed)
    splits = split_sentences(sentences, seed=seed, val_fraction=VAL_FRACTION, test_fraction=TEST_FRACTION)
    split_of = {sentence: name for name, items in splits.items() for sentence in items}
    index_of = {sentence: index for index, sentence in enumerate(sentences)}
    rng = np.random.default_rng(seed)
    style_rng = np.random.default_rng([seed, style_seed])
    candidates = [(sentence, voice) for sentence in sentences for voice in voices]
    order = rng.permutation(len(candidates))
    candidates = [candidates[i] for i in order]
    first = []
    for name in SPLITS:
        first += [c for c in candidates if split_of[c[0]] == name][:1]
    rest = [c for c in candidates if c not in first]
    shift = rotation % len(rest) if rest else 0
    candidates = first + rest[shift:] + rest[:shift]
    plans, total = [], 0.0
    for sentence, voice in candidates:
        if total >= minutes * 60 and len(plans) >= len(first):
            break
        rate = int(rng.choice(rates))
        clip_seed = int(rng.integers(0, 2**31 - 1))
        heard_by = [(voice, False)]
        if styles and split_of[sentence] == "test":
            heard_by += [(held_out, True) for held_out in held_out_voices]
        for speaker_voice, held_out in heard_by:
            if styles:
                rate, pitch = draw_voice(style_rng)
                style = draw_style(style_rng)
                tag = f"s{index_of[sentence]:03d}_{_voice_tag(speaker_voice)}_r{rate}p{pitch}"
            else:
                pitch, style, tag = None, None, f"s{index_of[sentence]:03d}_{_voice_tag(speaker_voice)}_{rate}"
            plans.append(ClipPlan(tag, split_of[sentence], sentence, speaker_voice, rate, clip_seed, pitch, style,
                                  held_out))
            total += SPEECH_RATE_FACTOR * len(sentence.split()) * 60.0 / rate + 2 * PAD_SECONDS
    return plans


def load_photo(photo: str | os.PathLike | None = None) -> tuple[np.ndarray, str]:
    """The corpus face: ``(H, W, 3)`` uint8 RGB and a description. Default: skimage's astronaut."""
    if photo is None:
        import skimage.data

        return skimage.data.astronaut(), "skimage.data.astronaut (public domain)"
    path = Path(photo)
    if not path.is_file():
        raise MemFaceInputError(path, "photo not found")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise MemFaceInputError(path, "not a readable image")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), f"{path.name} (sha256 {digest})"


def make_animator(photo: str | os.PathLike | None = None, tracker: FaceTracker | None = None) -> FaceAnimator:
    """Track the photo, upscale it so the face is ~210 px tall, and build its animator."""
    image, _ = load_photo(photo)
    tracker = tracker or FaceTracker()
    track = tracker.track([image])
    if not track.detected[0]:
        raise MemFaceInputError(photo or "astronaut", "no face found in the photo")
    face_height = float(np.ptp(track.landmarks[0, :, 1]))
    factor = max(1.0, TARGET_FACE_HEIGHT / face_height)
    if factor > 1.0:
        image = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
        track = tracker.track([image])
        if not track.detected[0]:
            raise MemFaceInputError(photo or "astronaut", "face lost after upscaling the photo")
    landmarks = track.landmarks[0]
    height = float(np.ptp(landmarks[:, 1]))
    frame_size = int(round(height * 1.68 / 2)) * 2
    # Keep the chin and some neck inside the frame: the frame is centred on the face.
    if landmarks[CHIN, 1] - landmarks[:, 1].mean() > frame_size / 2:
        frame_size += 32
    return FaceAnimator(image, landmarks, frame_size=frame_size)


def head_motion(num_frames: int, rng: np.random.Generator, fps: float = DEFAULT_FPS) -> list[HeadMotion]:
    """Slow, small in-plane head motion: sums of two sinusoids per parameter."""
    time = np.arange(num_frames) / fps

    def wave(amplitude: float) -> np.ndarray:
        frequencies = rng.uniform(0.15, 0.6, 2)
        phases = rng.uniform(0, 2 * np.pi, 2)
        return amplitude * 0.5 * (np.sin(2 * np.pi * frequencies[0] * time + phases[0])
                                  + np.sin(2 * np.pi * frequencies[1] * time + phases[1]))

    roll, shift_x, shift_y, scale = wave(1.8), wave(4.0), wave(2.5), 1.0 + wave(0.012)
    return [HeadMotion(float(r), float(x), float(y), float(s)) for r, x, y, s in zip(roll, shift_x, shift_y, scale)]


BLINK_PROFILE = (0.35, 0.85, 1.0, 0.7, 0.3)


def blink_curve(num_frames: int, rng: np.random.Generator, fps: float = DEFAULT_FPS) -> np.ndarray:
    """``(num_frames,)`` eyelid closure in [0, 1]: a blink every 2–5 s."""
    curve = np.zeros(num_frames, np.float32)
    start = int(rng.uniform(0.5, 3.0) * fps)
    while start < num_frames:
        for offset, value in enumerate(BLINK_PROFILE):
            if start + offset < num_frames:
                curve[start + offset] = value
        start += int(rng.uniform(2.0, 5.0) * fps)
    return curve


def render_clip(plan: ClipPlan, animator: FaceAnimator, out_dir: str | os.PathLike,
                fps: float = DEFAULT_FPS) -> dict:
    """Render one clip to ``out_dir/<clip_id>.mp4`` + ``.json``; returns the timeline dict."""
    out_dir = Path(out_dir)
    style = plan.style or NEUTRAL_STYLE
    speech = synthesize(plan.text, voice=plan.voice, rate=plan.rate, pitch=plan.pitch)
    pad = np.zeros(int(PAD_SECONDS * speech.sample_rate), np.float32)
    samples = np.concatenate([pad, speech.samples, pad])
    divisor = np.gcd(AUDIO_SAMPLE_RATE, speech.sample_rate)
    audio = resample_poly(samples, AUDIO_SAMPLE_RATE // divisor, speech.sample_rate // divisor).astype(np.float32)
    duration = len(audio) / AUDIO_SAMPLE_RATE
    num_frames = int(round(duration * fps))
    phonemes = [type(p)(p.symbol, p.start + PAD_SECONDS, p.end + PAD_SECONDS) for p in speech.phonemes]
    schedule = viseme_schedule(phonemes, num_frames, fps=fps, smoothing_s=style.coarticulation_s)
    visemes = apply_style(schedule.as_array(), style)          # (num_frames, 4)
    rng = np.random.default_rng(plan.seed)
    motion = head_motion(num_frames, rng, fps)
    blinks = blink_curve(num_frames, rng, fps)
    metadata = {"comment": SYNTHETIC_LABEL, "title": f"memface demo corpus: {plan.text}"}
    with VideoWriter(out_dir / f"{plan.clip_id}.mp4", fps=fps, audio=(audio, AUDIO_SAMPLE_RATE),
                     metadata=metadata, crf=16) as writer:
        for index in range(num_frames):
            writer.write(animator.render(visemes[index], float(blinks[index]), motion[index], style))
    timeline = {
        **asdict(plan), "style": style.as_dict(), "fps": fps, "num_frames": num_frames, "duration": duration,
        "sample_rate": AUDIO_SAMPLE_RATE, "pad_seconds": PAD_SECONDS, "synthetic": True,
        "phonemes": [[p.symbol, round(p.start, 4), round(p.end, 4)] for p in phonemes],
        "words": [[w.text, round(w.start + PAD_SECONDS, 4), round(w.end + PAD_SECONDS, 4)] for w in speech.words],
        "visemes": {name: np.round(visemes[:, channel], 4).tolist()
                    for channel, name in enumerate(("jaw_open", "lip_round", "lip_spread", "closure"))},
        "mouth_open": np.round(visemes[:, 0] * (1.0 - visemes[:, 3]), 4).tolist(),
        "blink": np.round(blinks, 3).tolist(),
        "head_roll_deg": [round(m.roll, 3) for m in motion],
    }
    write_text_atomic(out_dir / f"{plan.clip_id}.json", json.dumps(timeline))
    return timeline


_WORKER_ANIMATOR: FaceAnimator | None = None


def _worker_init(photo: str | None) -> None:
    global _WORKER_ANIMATOR
    limit_worker_threads()
    _WORKER_ANIMATOR = make_animator(photo)


def _worker_render(job: tuple[ClipPlan, str, float]) -> str:
    plan, out_dir, fps = job
    render_clip(plan, _WORKER_ANIMATOR, out_dir, fps)
    return plan.clip_id


def clip_is_done(clips_dir: Path, clip_id: str) -> bool:
    return (clips_dir / f"{clip_id}.mp4").is_file() and (clips_dir / f"{clip_id}.json").is_file()


def build_demo_corpus(out_dir: str | os.PathLike, minutes: float = 20.0, seed: int = 0,
                      photo: str | os.PathLike | None = None, voices: Sequence[str] = DEFAULT_VOICES,
                      rates: Sequence[int] = DEFAULT_RATES, workers: int = 1, fps: float = DEFAULT_FPS,
                      progress: bool = True, styles: bool = False, style_seed: int = 0,
                      held_out_voices: Sequence[str] = (), rotation: int = 0) -> dict:
    """Build (or finish building) the demo corpus in ``out_dir``; returns the ``corpus.json`` dict.

    Clips already rendered are kept; a corpus built with other settings is refused rather
    than mixed. ``styles``, ``style_seed``, ``held_out_voices`` and ``rotation``: see :func:`plan_corpus`
    (corpus v3).
    """
    out_dir = Path(out_dir)
    clips_dir = out_dir / "clips"
    clips_dir.mkdir(parents=True, exist_ok=True)
    _, photo_description = load_photo(photo)
    plans = plan_corpus(minutes, seed, voices, rates, styles=styles, style_seed=style_seed,
                        held_out_voices=held_out_voices, rotation=rotation)
    settings = {"seed": seed, "minutes": minutes, "voices": list(voices), "rates": list(rates),
                "photo": photo_description, "fps": fps}
    if styles:
        settings.update(styles=True, style_seed=style_seed, held_out_voices=list(held_out_voices), rotation=rotation)
    version = STYLED_CORPUS_VERSION if styles else CORPUS_VERSION
    index_path = out_dir / "corpus.json"
    if index_path.exists():
        previous = json.loads(index_path.read_text())
        if previous.get("settings") != settings or previous.get("format_version") != version:
            raise CorpusSettingsError(out_dir, "holds a demo corpus built with other settings or by another corpus "
                                               f"version (this is version {version}); use another folder")
    todo = [plan for plan in plans if not clip_is_done(clips_dir, plan.clip_id)]
    logger.info("demo corpus: %d clips planned, %d to render", len(plans), len(todo))
    bar = tqdm(total=len(todo), disable=not progress, desc="rendering demo corpus", unit="clip")
    if workers <= 1 or len(todo) <= 1:
        animator = make_animator(photo) if todo else None
        for plan in todo:
            render_clip(plan, animator, clips_dir, fps)
            bar.update()
    else:
        context = multiprocessing.get_context("spawn")
        with context.Pool(min(workers, len(todo)), initializer=_worker_init,
                          initargs=(None if photo is None else str(photo),)) as pool:
            for _ in pool.imap_unordered(_worker_render, [(plan, str(clips_dir), fps) for plan in todo]):
                bar.update()
    bar.close()
    clips = []
    for plan in plans:
        timeline = json.loads((clips_dir / f"{plan.clip_id}.json").read_text())
        clips.append({"clip_id": plan.clip_id, "split": plan.split, "text": plan.text, "voice": plan.voice,
                      "rate": plan.rate, "duration": timeline["duration"], "num_frames": timeline["num_frames"],
                      "video": f"clips/{plan.clip_id}.mp4", "timeline": f"clips/{plan.clip_id}.json"})
        if styles:
            clips[-1].update(pitch=plan.pitch, style=(plan.style or NEUTRAL_STYLE).as_dict(),
                             held_out_voice=plan.held_out_voice)
    index = {
        "format": CORPUS_FORMAT, "format_version": version, "settings": settings, "synthetic": True,
        "splits": {name: [c["clip_id"] for c in clips if c["split"] == name] for name in SPLITS},
        "total_seconds": round(sum(c["duration"] for c in clips), 2), "clips": clips,
    }
    write_text_atomic(index_path, json.dumps(index, indent=1))
    return index
