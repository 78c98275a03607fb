"""The multi-person training corpus: real clips of many people plus synthetic clips of many faces.

One builder for both models (renderer and audio-to-expression):

1. **real clips** (a folder of talking-head videos, kept outside the repository): each video is
   preprocessed into a shard; a clip that cannot be used is refused with a one-line reason, the rest go on;
2. **synthetic clips**: each face photo (a folder of portraits, and scikit-image's astronaut) is made to
   speak TTS sentences (:mod:`.demo_corpus`), then preprocessed like real video; with ``styles`` (the
   default, corpus version 2) every face speaks the same sentences in its own drawn speaking styles,
   rates, pitches and voices (:mod:`.speaking_style`), one voice heard only on test sentences;
3. ``corpus.json``: every shard with its person, source and audio, and the split **by person**
   from a people file (default: the committed ``real_people.json``, names only), so no frame of a
   validation or test person is ever seen in training (``splits``, what the renderer trains on).
   The audio-to-expression model also must not hear a test sentence or the held-out voice:
   ``a2e_splits`` keeps a synthetic clip in ``train`` only when its person, its sentence and its voice
   are all training ones, and names the held-out groups (``test_sentence``: training faces and voices
   saying test sentences; ``test_voice``: the held-out voice on training faces; ``test_face``: test
   people's faces in training voices; ``test_real``: test people's real clips).

Layout of ``<out>``::

    shards/<clip_id>/          one shard per clip (see :mod:`.shards`)
    synthetic/<person>/        the rendered synthetic clips of one face (mp4 + timeline JSON)
    corpus.json                splits, clips, refusals
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..arrays_io import write_text_atomic
from ..audio.base import SILENCE_PEAK
from ..errors import MemFaceInputError
from ..io.audio import load_audio
from ..io.shards import load_shard
from .preprocess import preprocess_clips, unique_clip_ids

logger = logging.getLogger(__name__)

PEOPLE_FILE = Path(__file__).resolve().parent / "real_people.json"
PEOPLE_FORMAT = "memface-real-people-split"
CORPUS_FORMAT = "memface-multi-person-corpus"
CORPUS_VERSION = 2     # 2: speaking styles (demo corpus v3) and a2e_splits
SPLITS = ("train", "val", "test")
VIDEO_SUFFIXES = (".mp4", ".mpg", ".mpeg", ".mov", ".mkv", ".avi", ".webm")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
ASTRONAUT = "astronaut"          # skimage's public-domain photo: a portrait name that needs no file
SYNTHETIC_PREFIX = "syn_"
FACE_ROTATION = 8      # clips between the first sentences of consecutive faces (corpus v2, styled)
A2E_GROUPS = ("test_sentence", "test_voice", "test_face", "test_real", "val_real")


@dataclass(frozen=True)
class Person:
    """One identity: its split and the names (file stems) of its clips and portraits."""

    name: str
    split: str
    clips: tuple[str, ...] = ()
    portraits: tuple[str, ...] = ()


@dataclass
class CorpusReport:
    """What :func:`build_corpus` made: the ``corpus.json`` dict and the refused inputs."""

    index: dict
    refused: list[dict] = field(default_factory=list)


def load_people(path: str | os.PathLike | None = None) -> dict[str, Person]:
    """Read and validate a people file (default: the committed split). Every clip or portrait
    name belongs to exactly one person; splits are ``train``, ``val`` or ``test``."""
    path = Path(path) if path is not None else PEOPLE_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise MemFaceInputError(path, f"cannot read the people file ({type(err).__name__})") from None
    if not isinstance(data, dict) or data.get("format") != PEOPLE_FORMAT or not isinstance(data.get("people"), dict):
        raise MemFaceInputError(path, f"not a people file (expected format {PEOPLE_FORMAT!r} with a 'people' object)")
    people, owner = {}, {}
    for name, entry in data["people"].items():
        if not isinstance(entry, dict) or entry.get("split") not in SPLITS:
            raise MemFaceInputError(path, f"person {name!r} needs a split among {SPLITS}")
        names = {key: entry.get(key, []) for key in ("clips", "portraits")}
        for key, values in names.items():
            if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
                raise MemFaceInputError(path, f"person {name!r}: {key} must be a list of names")
            for value in values:
                if value in owner:
                    raise MemFaceInputError(path, f"{value!r} is listed for both {owner[value]!r} and {name!r}")
                owner[value] = name
        people[name] = Person(name, entry["split"], tuple(names["clips"]), tuple(names["portraits"]))
    return people


def person_of(people: dict[str, Person]) -> dict[str, Person]:
    """Clip or portrait name → its person."""
    return {item: person for person in people.values() for item in (*person.clips, *person.portraits)}


def _files(folder: str | os.PathLike | None, suffixes: Sequence[str]) -> list[Path]:
    if folder is None:
        return []
    folder = Path(folder)
    if not folder.is_dir():
        raise MemFaceInputError(folder, "not a folder")
    return sorted(path for path in folder.iterdir() if path.suffix.lower() in suffixes)


def style_seed_of(person: str) -> int:
    """A stable per-face seed for its speaking styles (the sentences stay the same for every face)."""
    return zlib.crc32(person.encode())


def _synthetic_clips(person: str, photo: Path | None, out: Path, minutes: float, seed: int, workers: int,
                     progress: bool, styles: bool, face_index: int) -> list[tuple[Path, str, dict]]:
    """Render one face's synthetic clips; returns ``(video, clip id, demo corpus entry)`` triples.

    With styles, face ``i`` starts the shared sentence order :data:`FACE_ROTATION` ``· i`` clips in, so
    neighbouring faces say some of the same sentences (in their own styles) and each adds new ones.
    """
    from .demo_corpus import HELD_OUT_VOICES, STYLED_VOICES, build_demo_corpus

    extra = ({"styles": True, "style_seed": style_seed_of(person), "held_out_voices": HELD_OUT_VOICES,
              "voices": STYLED_VOICES, "rotation": FACE_ROTATION * face_index} if styles else {})
    index = build_demo_corpus(out, minutes=minutes, seed=seed, photo=photo, workers=workers, progress=progress,
                              **extra)
    return [(out / clip["video"], f"{SYNTHETIC_PREFIX}{person}_{clip['clip_id']}", clip) for clip in index["clips"]]


def a2e_group(person_split: str, source: str, sentence_split: str | None, held_out_voice: bool) -> tuple[str, str]:
    """``(split, held-out group)`` of one clip for the audio-to-expression model (see the module doc)."""
    if source == "real":
        return person_split, {"test": "test_real", "val": "val_real"}.get(person_split, "")
    if person_split != "train":
        return person_split, "test_face" if person_split == "test" and not held_out_voice else ""
    if held_out_voice:
        return "test", "test_voice"
    sentence_split = sentence_split or "train"
    return sentence_split, "test_sentence" if sentence_split == "test" else ""


def build_corpus(out_dir: str | os.PathLike, real_clips: str | os.PathLike | None = None,
                 portraits: str | os.PathLike | None = None, people_file: str | os.PathLike | None = None,
                 synthetic_minutes: float = 0.5, include_astronaut: bool = True, seed: int = 0,
                 workers: int = 1, progress: bool = True, styles: bool = True) -> CorpusReport:
    """Build (or finish building: everything is resumable) the multi-person corpus in ``out_dir``.

    ``real_clips`` and ``portraits`` are folders (either may be ``None``); only files named in the
    people file are used, anything else is refused with a reason (an unlisted clip has no split, and
    guessing one could leak a test person into training). ``synthetic_minutes`` per face; ``styles``:
    speaking styles and the held-out voice (demo corpus v3; ``False`` renders corpus v2 clips).
    """
    out = Path(out_dir)
    shards = out / "shards"
    shards.mkdir(parents=True, exist_ok=True)
    people = load_people(people_file)
    owner = person_of(people)
    refused: list[dict] = []
    jobs: list[tuple[Path, str, str, str, dict]] = []    # (video, clip id, person, source, demo entry)

    # 1. real clips, by the name of the file
    videos = _files(real_clips, VIDEO_SUFFIXES)
    for video, clip_id in zip(videos, unique_clip_ids(videos)):
        if video.stem not in owner:
            refused.append({"input": str(video), "reason": "not listed in the people file (no split for it)"})
            continue
        jobs.append((video, clip_id, owner[video.stem].name, "real", {}))
    # 2. synthetic clips of each listed face photo
    photos: list[tuple[str, Path | None]] = [(path.stem, path) for path in _files(portraits, IMAGE_SUFFIXES)]
    if include_astronaut and ASTRONAUT in owner:
        photos.append((ASTRONAUT, None))
    from .demo_corpus import CorpusSettingsError

    for face_index, (stem, photo) in enumerate(photos):
        if stem not in owner:
            refused.append({"input": str(photo), "reason": "not listed in the people file (no split for it)"})
            continue
        person = owner[stem].name
        try:
            rendered = _synthetic_clips(person, photo, out / "synthetic" / person, synthetic_minutes, seed, workers,
                                        progress, styles, face_index)
        except CorpusSettingsError as err:      # never rewrite the index of a corpus built otherwise
            raise MemFaceInputError(out, f"its synthetic clips were built with other settings ({err.problem}); "
                                         "build into another folder, or give the flags it was built with "
                                         "(--no-styles for a corpus built before speaking styles)") from None
        except MemFaceInputError as err:
            refused.append({"input": str(photo or ASTRONAUT), "reason": err.problem})
            logger.error("%s", err)
            continue
        jobs += [(video, clip_id, person, "synthetic", entry) for video, clip_id, entry in rendered]

    # 3. preprocess everything (finished shards are skipped)
    results = preprocess_clips([str(job[0]) for job in jobs], shards, workers=workers, progress=progress,
                               clip_ids=[job[1] for job in jobs], require_audio=False)
    clips = {}
    for (video, clip_id, person, source, entry), result in zip(jobs, results):
        if result.status == "failed":
            refused.append({"input": str(video), "reason": result.error})
            continue
        shard = load_shard(shards / clip_id)
        audio_peak = float(np.abs(load_audio(shard.audio_path)).max(initial=0.0)) if shard.audio_path else 0.0
        clips[clip_id] = {"person": person, "split": people[person].split, "source": source,
                          "video": str(video), "frames": shard.num_frames,
                          "frames_tracked": int(shard.meta["frames_tracked"]),
                          "frames_valid": int(shard.meta["frames_valid"]),
                          "has_audio": audio_peak >= SILENCE_PEAK,      # a sound track of zeros is no speech
                          "audio_track": shard.audio_path is not None}
        if source == "synthetic":
            clips[clip_id].update(sentence_split=entry.get("split"), voice=entry.get("voice"),
                                  held_out_voice=bool(entry.get("held_out_voice", False)),
                                  **({"style": entry["style"], "pitch": entry["pitch"]} if "style" in entry else {}))
        split, group = a2e_group(people[person].split, source, entry.get("split"), bool(entry.get("held_out_voice")))
        clips[clip_id].update(a2e_split=split, a2e_group=group)
    index = {
        "format": CORPUS_FORMAT, "format_version": CORPUS_VERSION,
        "people_file": str(Path(people_file) if people_file else PEOPLE_FILE.name),
        "splits": {name: sorted(c for c, info in clips.items() if info["split"] == name) for name in SPLITS},
        "a2e_splits": {name: sorted(c for c, info in clips.items() if info["a2e_split"] == name) for name in SPLITS}
        | {group: sorted(c for c, info in clips.items() if info["a2e_group"] == group) for group in A2E_GROUPS},
        "people": {name: {"split": person.split,
                          "clips": sorted(c for c, info in clips.items() if info["person"] == name)}
                   for name, person in people.items()},
        "clips": clips, "refused": refused,
    }
    write_text_atomic(out / "corpus.json", json.dumps(index, indent=1))
    for item in refused:
        logger.warning("refused %s: %s", item["input"], item["reason"])
    logger.info("corpus in %s: %d clips of %d people (%s), %d refused", out.resolve(), len(clips),
                len({c["person"] for c in clips.values()}),
                ", ".join(f"{name} {len(index['splits'][name])}" for name in SPLITS), len(refused))
    return CorpusReport(index, refused)
