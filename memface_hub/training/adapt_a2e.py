"""Adapt the audio-to-expression model to a new speaker's own lip motion (paper Sec. 4.2, Tab. 2–3).

The paper pre-trains the a2e model on a corpus, then fine-tunes it on 15–30 s of the new speaker
("we fine-tune both the audio-to-expression model and neural-rendering model on the short adaption
videos"), updating model and implicit memory alternately in the first half (supplement B.2). Here, when
the adaptation video has speech:

1. the clip becomes a2e training arrays exactly as in training (:func:`~memface_hub.data.a2e_clips.load_a2e_clips`:
   the model's front end on the clip's audio; targets ``e`` = the tracked mouth vertices encoded with the
   model's own mouth basis, so ``verts(e)`` is the tracked mouth);
2. its last :data:`HELD_OUT_FRACTION` is held out; the rest is cut into windows of the model's context;
3. the implicit memory and the decoder side (:data:`~memface_hub.a2e.A2E_ADAPTED_MODULES`) are fine-tuned
   with eq. 4 for a step or time budget, the audio encoder frozen (a few seconds of one voice must not
   undo what it learned from many);
4. the held-out mouth-vertex RMSE is measured before tuning and :data:`CHECKS` times during it; the best
   weights are kept, **or none** when no check beats the shared model;
5. what was kept is stored as a float16 delta (``a2e_delta.safetensors``) beside the speaker memory, made
   against the base model's fingerprint; generation applies it (``MemFacePipeline.a2e_for``).

The model returned is the base plus the float16 delta, exactly what generation will use.

Without a fine-tuning budget (memory-only adaptation) the speaker still gets one number from their video:
the **articulation gain** (:func:`articulation_gain`), how much wider the person's lips move than the shared
model predicts from their own speech (the RMS of the tracked mouth opening over the RMS of the predicted
one, both from the neutral mouth). A model trained with an L1/L2 loss on a one-to-many mapping
under-articulates (it predicts the average motion); generation scales the expressions by the gain
(``speaker.json``'s ``articulation``, applied only with the a2e model it was measured with and no a2e delta).
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..a2e import (
    A2E_ADAPTED_MODULES,
    A2E_DELTA_FILE,
    MemFaceAudioToExpression,
    a2e_delta,
    a2e_delta_metadata,
    apply_a2e_delta,
)
from ..arrays_io import save_arrays
from ..audio import build_frontend
from ..audio.base import SILENCE_PEAK
from ..data.a2e_clips import A2EClip, A2EWindows, load_a2e_clips
from ..face.geometry import mouth_opening
from ..face.mouth_model import MouthModel
from ..io.audio import load_audio
from ..io.shards import load_shard
from ..pipeline import DEMO_PIPELINE
from .losses import a2e_loss
from .schedules import AlternatingSchedule

logger = logging.getLogger(__name__)

HELD_OUT_FRACTION = 0.2        # the last part of the adaptation clip judges the fine-tuning
MIN_HELD_OUT_FRAMES = 5        # fewer held-out frames than this: the clip is too short to check, nothing is kept
CHECKS = 8                     # held-out checks over a budget
ALTERNATE_FRACTION = 0.5       # memory / model steps alternate in this first part of the budget (suppl. B.2)
GAIN_RANGE = (0.67, 1.5)       # the articulation gain is clipped to this (a short clip measures it roughly)


@dataclass
class A2EAdaptation:
    """What one a2e fine-tuning did. Errors: held-out mouth-vertex RMSE in canonical units (eye distance 1)."""

    model: MemFaceAudioToExpression   # base + kept float16 delta (the base itself when nothing was kept)
    delta: dict                       # name → (shape) float16 array; empty when nothing was kept
    steps: int
    seconds: float
    base_error: float | None          # before tuning (None: no held-out check)
    error: float | None               # of the returned model
    train_frames: int
    held_out_frames: int

    @property
    def kept(self) -> bool:
        return bool(self.delta)


def load_a2e(a2e: MemFaceAudioToExpression | str | os.PathLike | None) -> MemFaceAudioToExpression:
    """``a2e`` itself, or the model in a folder / Hub repo (strict safetensors load); ``None``: the bundled
    demo pipeline's a2e, the one ``memface generate`` uses by default."""
    if isinstance(a2e, MemFaceAudioToExpression):
        return a2e
    return MemFaceAudioToExpression.from_pretrained(DEMO_PIPELINE / "a2e" if a2e is None else a2e)


def speech_clip(shard_dir: str | Path, model: MemFaceAudioToExpression) -> A2EClip | None:
    """The shard as a2e training arrays for ``model`` (its front end and mouth basis), or ``None`` when the
    clip has no speech (no sound track, or digitally silent)."""
    shard_dir = Path(shard_dir)
    shard = load_shard(shard_dir)
    audio = load_audio(shard.audio_path) if shard.audio_path is not None else None
    if audio is None or not audio.size or float(np.abs(audio).max()) < SILENCE_PEAK:
        return None
    frontend = build_frontend(model.frontend or "mel")
    mouth_model = MouthModel(model.mouth_basis.cpu().numpy())
    return load_a2e_clips(shard_dir.parent, [shard_dir.name], frontend, mouth_model)[0]


def take_frames(clip: A2EClip, start: int, stop: int) -> A2EClip:
    """Frames ``start .. stop`` of ``clip`` (features, targets and tracks alike)."""
    return A2EClip(clip.clip_id, clip.features[start:stop], clip.expressions[start:stop], clip.neutral,
                   clip.valid[start:stop], clip.vertices[start:stop])


@torch.no_grad()
def vertex_rmse(model: MemFaceAudioToExpression, clip: A2EClip) -> float:
    """Mouth-vertex RMSE (canonical units, docs/EVALUATION.md) of ``model`` on ``clip``'s tracked frames,
    predicted from ``clip``'s audio alone (as generation would)."""
    model.eval()
    expressions = model.predict(clip.features)                                          # (T, K)
    neutral = torch.from_numpy(clip.neutral.astype(np.float32)).to(expressions.device)
    predicted = model.vertices(expressions, neutral).cpu().numpy()                      # (T, V, 3)
    squared = (predicted - clip.vertices) ** 2
    return float(np.sqrt(squared[clip.valid].mean())) if clip.valid.any() else float("nan")


def finetune_a2e(model: MemFaceAudioToExpression, clip: A2EClip, steps: int | None = None,
                 seconds: float | None = None, learning_rate: float = 1e-3, batch_size: int = 8,
                 held_out_check: bool = True, progress: bool = True, seed: int = 0) -> A2EAdaptation:
    """Fine-tune a copy of ``model`` on one speaker's ``clip`` for ``steps`` and/or ``seconds`` (see the
    module docstring); ``model`` itself is not changed.

    ``held_out_check=False`` trains on every frame and keeps the last weights (tests, or a caller that
    judges the result itself).
    """
    if not steps and not seconds:
        raise ValueError("finetune_a2e needs a step or a time budget")
    base = copy.deepcopy(model).float().cpu().eval()
    tuned = copy.deepcopy(base)
    started = time.perf_counter()
    # 1. split: train on the start, judge on the held-out end
    cut = int(len(clip.features) * (1 - HELD_OUT_FRACTION)) if held_out_check else len(clip.features)
    train, held_out = take_frames(clip, 0, cut), take_frames(clip, cut, len(clip.features))
    if held_out_check and held_out.valid.sum() < MIN_HELD_OUT_FRAMES:
        logger.info("a2e adaptation: %d tracked held-out frames, too few to check a fine-tuning; nothing kept",
                    int(held_out.valid.sum()))
        return A2EAdaptation(base, {}, 0, time.perf_counter() - started, None, None, cut, len(held_out.features))
    # Windows start at many offsets (and are shorter than a short clip), so that the sinusoidal positions
    # cannot tell the frames apart: one padded window from position 0 lets the model learn the clip by heart.
    window = min(model.context_frames, max(8, len(train.features) // 2))
    windows = A2EWindows([train], window=window, stride=max(1, window // 8))
    loader = torch.utils.data.DataLoader(windows, batch_size=batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(seed))
    # 2. what learns: the implicit memory and the decoder side; the audio encoder stays as trained
    for name, parameter in tuned.named_parameters():
        parameter.requires_grad_(name.split(".")[0] in A2E_ADAPTED_MODULES)
    trainable = [parameter for parameter in tuned.parameters() if parameter.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=learning_rate)
    alternating = AlternatingSchedule(total_steps=1 << 62, alternate_fraction=1.0)  # applied in the first part only
    torch.manual_seed(seed)                                                      # dropout

    # 3. train, checking the held-out end CHECKS times over the budget
    base_error = vertex_rmse(base, held_out) if held_out_check else None
    best_error, best_state, next_check, step = base_error, None, 1, 0
    training_started = time.perf_counter()                       # the time budget is training time

    def done() -> float:
        fractions = [step / steps if steps else 0.0,
                     (time.perf_counter() - training_started) / seconds if seconds else 0.0]
        return max(fractions)

    bar = tqdm(total=steps, disable=not progress, desc="fine-tuning a2e", unit="step")
    while done() < 1.0:
        for batch in loader:
            tuned.train()
            output = tuned(batch["features"], batch["padding"])
            vertices = tuned.vertices(output.expressions, batch["neutral"])
            target = tuned.vertices(batch["expressions"], batch["neutral"])
            loss = a2e_loss(output.expressions, batch["expressions"], vertices, target, batch["mask"],
                            tuned.memory_regulariser())
            optimizer.zero_grad(set_to_none=True)
            loss.total.backward()
            if done() < ALTERNATE_FRACTION:
                alternating.mask_gradients(step, tuned.memory_parameters(), trainable)
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            step += 1
            bar.update()
            bar.set_postfix(loss=f"{loss.total.item():.4f}")
            if held_out_check and (done() >= next_check / CHECKS or done() >= 1.0):
                next_check = math.floor(done() * CHECKS) + 1
                error = vertex_rmse(tuned, held_out)
                if error < best_error:
                    best_error, best_state = error, copy.deepcopy(tuned.state_dict())
            if done() >= 1.0:
                break
    bar.close()
    if not held_out_check:
        best_state = tuned.state_dict()
    for parameter in tuned.parameters():
        parameter.requires_grad_(True)
    if best_state is None:
        logger.info("a2e fine-tuning did not lower the held-out mouth-vertex RMSE (%.5f); keeping the shared a2e",
                    base_error)
        return A2EAdaptation(base, {}, step, time.perf_counter() - started, base_error, base_error, cut,
                             len(held_out.features))
    # 4. the kept weights as a float16 delta, and the model generation will rebuild from it
    tuned.load_state_dict(best_state)
    delta = a2e_delta(base, tuned)
    final = _with_delta(base, delta)
    error = vertex_rmse(final, held_out) if held_out_check else None
    if held_out_check and not error < base_error:              # float16 rounding undid a tiny gain
        logger.info("a2e fine-tuning: gain lost to float16 rounding (%.5f vs %.5f); keeping the shared a2e",
                    error, base_error)
        return A2EAdaptation(base, {}, step, time.perf_counter() - started, base_error, base_error, cut,
                             len(held_out.features))
    if held_out_check:
        logger.info("a2e fine-tuned: held-out mouth-vertex RMSE %.5f (before %.5f), %d steps", error, base_error, step)
    return A2EAdaptation(final.eval(), delta, step, time.perf_counter() - started, base_error, error, cut,
                         len(held_out.features))


def _with_delta(base: MemFaceAudioToExpression, delta: dict) -> MemFaceAudioToExpression:
    """``base`` + the float16 ``delta``, added as :func:`~memface_hub.a2e.apply_a2e_delta` adds it."""
    model = copy.deepcopy(base)
    state = model.state_dict()
    for name, change in delta.items():
        state[name] += torch.from_numpy(change.astype(np.float32))
    model.load_state_dict(state, strict=True)
    return model


def gain_from_openings(real: np.ndarray, predicted: np.ndarray, rest: float) -> float:
    """RMS ratio of two mouth-opening series ``(T,)`` measured from the rest opening ``rest``, clipped to
    :data:`GAIN_RANGE`: how much wider the real lips move than the predicted ones."""
    real, predicted = np.asarray(real, np.float64) - rest, np.asarray(predicted, np.float64) - rest
    predicted_rms = float(np.sqrt(np.mean(predicted ** 2))) if predicted.size else 0.0
    if predicted_rms < 1e-6:
        return 1.0
    return float(np.clip(np.sqrt(np.mean(real ** 2)) / predicted_rms, *GAIN_RANGE))


@torch.no_grad()
def articulation_gain(model: MemFaceAudioToExpression, clip: A2EClip | None) -> float | None:
    """The speaker's articulation gain for ``model`` (see the module doc) from the adaptation clip's
    :func:`speech_clip`, measured on its tracked frames; ``None`` when the clip has no speech."""
    if clip is None or not clip.valid.any():
        return None
    model.eval()
    expressions = model.predict(clip.features)                                          # (T, K)
    neutral = torch.from_numpy(clip.neutral.astype(np.float32)).to(expressions.device)
    predicted = model.vertices(expressions, neutral).float().cpu().numpy()             # (T, V, 3)
    rest = float(mouth_opening(clip.neutral[None])[0])
    return gain_from_openings(mouth_opening(clip.vertices)[clip.valid], mouth_opening(predicted)[clip.valid], rest)


def adapt_a2e(model: MemFaceAudioToExpression, clip: A2EClip | None, out_dir: str | Path, steps: int | None = None,
              seconds: float | None = None, progress: bool = True, **finetune_kwargs) -> A2EAdaptation | None:
    """The hook of :func:`~memface_hub.training.adapt.adapt_speaker`: fine-tune on the adaptation clip (its
    :func:`speech_clip`) and write ``out_dir/a2e_delta.safetensors`` when the fine-tuning was kept.

    ``None`` when the clip has no speech (``clip`` is ``None``: nothing to learn lips from; nothing written).
    """
    if clip is None:
        logger.info("the adaptation video has no speech; the a2e model is not adapted")
        return None
    result = finetune_a2e(model, clip, steps, seconds, progress=progress, **finetune_kwargs)
    if result.kept:
        path = save_arrays(Path(out_dir) / A2E_DELTA_FILE, result.delta, metadata=a2e_delta_metadata(model))
        apply_a2e_delta(copy.deepcopy(model).float().cpu(), path)      # what generation will load: check it now
    return result
