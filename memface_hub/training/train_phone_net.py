"""Train the ``phone_net`` front end (:mod:`memface_hub.audio.phone_net`) on the synthetic corpus's TTS audio.

    memface train-phone-net --corpus ../data/corpus --out runs/phone_net

Data: every synthetic clip of a multi-person corpus (``synthetic/<face>/clips/*.mp4`` with the espeak-ng
phoneme timeline beside it) whose a2e split is ``train`` — so the test sentences, the held-out voice
and the validation/test faces' clips are never heard — labelled per 10 ms with the phoneme that covers
the frame centre (silence between). Validation: the ``val`` clips. A plain demo corpus (``clips/`` and its
``corpus.json``, split by sentence) works too.

Augmentation towards real recordings (:func:`~memface_hub.audio.augment.augment_audio`: speed and pitch,
reverberation, band-limiting, noise), ``augment_copies`` per clip plus the clean one; the labels are
stretched with the speed.

Training: random 2.56 s crops, cross-entropy, AdamW with a one-cycle schedule; the validation
frame accuracy picks the kept weights (``<out>/best``, :func:`~memface_hub.audio.phone_net.save_phone_net`).
Resumable: ``<out>/checkpoint.pt`` after every epoch.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..arrays_io import write_text_atomic
from ..audio.augment import augment_audio
from ..audio.mel import HOP_LENGTH, normalised_log_mel
from ..audio.phone_net import CLASS_INDEX, N_MELS, PHONE_CLASSES, SILENCE, build_phone_net, phone_class, save_phone_net
from ..errors import MemFaceInputError
from ..io.audio import AUDIO_SAMPLE_RATE, load_audio

logger = logging.getLogger(__name__)

CROP_FRAMES = 256


@dataclass
class PhoneNetTrainingConfig:
    corpus: str
    output_dir: str
    people_file: str | None = None      # the multi-person corpus's people file (default: the committed one)
    epochs: int = 30
    steps_per_epoch: int = 60
    batch_size: int = 24
    learning_rate: float = 2e-3
    channels: int = 160
    blocks: int = 5
    augment_copies: int = 3
    seed: int = 0
    progress: bool = True


def _clips(corpus: Path, people_file: str | None = None) -> dict[str, list[tuple[Path, Path]]]:
    """``{split: [(video, timeline JSON)]}``: a multi-person corpus's synthetic faces (each clip's split as
    the a2e model's, :func:`~memface_hub.data.corpus.a2e_group`; nothing needs to be tracked yet) or one
    demo corpus (its sentence split, held-out voices left out)."""
    from ..data.corpus import a2e_group, load_people

    splits: dict[str, list[tuple[Path, Path]]] = {"train": [], "val": []}
    faces = sorted((corpus / "synthetic").glob("*/corpus.json"))
    if faces:                                                   # a multi-person corpus
        people = load_people(people_file)
        for index_path in faces:
            person = people.get(index_path.parent.name)
            if person is None:
                raise MemFaceInputError(index_path, "a face that is not in the people file")
            for clip in json.loads(index_path.read_text())["clips"]:
                split, _ = a2e_group(person.split, "synthetic", clip["split"], bool(clip.get("held_out_voice")))
                if split in splits:
                    splits[split].append((index_path.parent / clip["video"], index_path.parent / clip["timeline"]))
    elif (corpus / "corpus.json").is_file():                    # one demo corpus, split by sentence
        for clip in json.loads((corpus / "corpus.json").read_text()).get("clips", []):
            if clip["split"] in splits and not clip.get("held_out_voice"):
                splits[clip["split"]].append((corpus / clip["video"], corpus / clip["timeline"]))
    if not splits["train"] or not splits["val"]:
        raise MemFaceInputError(corpus, f"need synthetic train and val clips, found {len(splits['train'])} and "
                                        f"{len(splits['val'])}")
    return splits


def frame_labels(phonemes: list, num_frames: int, factor: float = 1.0) -> np.ndarray:
    """``(num_frames,)`` int64 class per 10 ms frame (centre ``j · 10 ms``) from ``[[symbol, start, end], ...]``
    in seconds, after the audio was slowed by ``factor`` (times × factor)."""
    labels = np.full(num_frames, CLASS_INDEX[SILENCE], np.int64)
    times = np.arange(num_frames) * HOP_LENGTH / AUDIO_SAMPLE_RATE
    for symbol, start, end in phonemes:
        labels[(times >= start * factor) & (times < end * factor)] = phone_class(symbol)
    return labels


def prepare(pairs: list[tuple[Path, Path]], copies: int, seed: int, progress: bool, desc: str):
    """``[(mel (T, 80) float32, labels (T,) int64)]``: each clip clean and in ``copies`` augmented copies."""
    rng = np.random.default_rng(seed)
    items = []
    for video, timeline_path in tqdm(pairs, disable=not progress, desc=desc, unit="clip"):
        timeline = json.loads(timeline_path.read_text())
        audio = load_audio(video)
        for copy in range(copies + 1):
            sound, factor = (audio, 1.0) if copy == 0 else augment_audio(audio, rng)
            mel = normalised_log_mel(sound, AUDIO_SAMPLE_RATE, N_MELS)
            items.append((mel, frame_labels(timeline["phonemes"], len(mel), factor)))
    return items


def _batch(items, rng: np.random.Generator, size: int):
    import torch

    mels = np.zeros((size, N_MELS, CROP_FRAMES), np.float32)
    labels = np.full((size, CROP_FRAMES), -100, np.int64)      # -100: padding, ignored by the loss
    for row, index in enumerate(rng.integers(0, len(items), size)):
        mel, label = items[index]
        start = int(rng.integers(0, max(len(mel) - CROP_FRAMES, 0) + 1))
        piece = slice(start, start + CROP_FRAMES)
        count = len(mel[piece])
        mels[row, :, :count], labels[row, :count] = mel[piece].T, label[piece]
    return torch.from_numpy(mels), torch.from_numpy(labels)


def frame_accuracy(model, items) -> float:
    """Share of 10 ms frames whose most likely class is the labelled one (whole clips)."""
    import torch

    right = total = 0
    with torch.inference_mode():
        for mel, label in items:
            guess = model(torch.from_numpy(np.ascontiguousarray(mel.T))[None])[0].argmax(0).numpy()
            right += int((guess == label).sum())
            total += len(label)
    return right / max(total, 1)


def train_phone_net(config: PhoneNetTrainingConfig) -> Path:
    """Train (or resume) and return ``<output_dir>/best``."""
    import torch

    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    splits = _clips(Path(config.corpus), config.people_file)
    logger.info("phone_net: %d training clips, %d validation clips", len(splits["train"]), len(splits["val"]))
    train = prepare(splits["train"], config.augment_copies, config.seed, config.progress, "augmenting")
    val = prepare(splits["val"], 0, config.seed, False, "val")
    torch.manual_seed(config.seed)
    model = build_phone_net(channels=config.channels, blocks=config.blocks)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=1e-2)
    total = config.epochs * config.steps_per_epoch
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.learning_rate, total_steps=total, pct_start=0.1)
    state = {"epoch": 0, "best_val_accuracy": -1.0, "history": []}
    checkpoint = out / "checkpoint.pt"
    if checkpoint.is_file():
        saved = torch.load(checkpoint, weights_only=True)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state = json.loads(saved["state"])
    rng = np.random.default_rng([config.seed, state["epoch"]])
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=-100)
    for epoch in range(state["epoch"], config.epochs):
        model.train()
        started, losses = time.perf_counter(), []
        steps = tqdm(range(config.steps_per_epoch), disable=not config.progress, desc=f"epoch {epoch + 1}", unit="step")
        for _ in steps:
            mels, labels = _batch(train, rng, config.batch_size)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model(mels)
            loss = loss_fn(logits.float(), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
        model.eval()
        accuracy = frame_accuracy(model, val)
        seconds = time.perf_counter() - started
        state["history"].append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_accuracy": accuracy,
                                 "crops_per_s": config.steps_per_epoch * config.batch_size / seconds})
        logger.info("epoch %d: loss %.3f, val frame accuracy %.3f (%.1f crops/s)", epoch + 1, np.mean(losses),
                    accuracy, state["history"][-1]["crops_per_s"])
        if accuracy > state["best_val_accuracy"]:
            state["best_val_accuracy"] = accuracy
            state["best_sha256"] = save_phone_net(model, out / "best")
        state["epoch"] = epoch + 1
        temporary = out / ".checkpoint.pt.tmp"
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "state": json.dumps(state)}, temporary)
        os.replace(temporary, checkpoint)
        write_text_atomic(out / "trainer_state.json", json.dumps(state, indent=1))
    return out / "best"


__all__ = ["PHONE_CLASSES", "PhoneNetTrainingConfig", "frame_labels", "train_phone_net"]
