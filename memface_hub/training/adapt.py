"""Adapt MemFace to a new speaker from 15–60 s of video (paper Sec. 3.3 / 4.2).

1. preprocess the video (audio optional), 2. build the speaker's explicit memory (Alg. 1) and
save it, 3. optionally fine-tune the renderer's decoder on the clip for a step or time budget and store
the change as a weight delta beside the memory (``renderer_delta.safetensors``).

Why a weight delta and not LoRA: the renderer is a small convolutional U-Net (about 1 M
parameters at the default width), so the full delta is a few MB in float16, exact, needs no
extra dependency at load time, and is applied with the same strict name/shape checks as any
weights; LoRA on 3×3 convolutions would save little here and change the architecture.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..a2e import a2e_fingerprint
from ..arrays_io import atomic_folder, save_arrays
from ..data.preprocess import preprocess_clip
from ..data.renderer_frames import RendererFrames
from ..errors import MemFaceInputError
from ..face.sketch import MOUTH_REGION, lips_mask
from ..io.video import MAX_SHORT_SIDE
from ..renderer import MemFaceRenderer, apply_renderer_delta, renderer_delta  # noqa: F401 (re-exported)
from ..speaker import DELTA_FILE, SPEAKER_FILE, SpeakerMemory
from ..staging import temporary_directory
from .adapt_a2e import adapt_a2e, articulation_gain, load_a2e, speech_clip
from .losses import renderer_loss

logger = logging.getLogger(__name__)

ADAPT_STAGES = ("tracking", "memory", "fine-tuning", "done")   # what ``adapt_speaker`` reports to ``on_stage``


@dataclass
class AdaptationResult:
    """Where the adapted speaker is and what it cost (seconds on this machine)."""

    speaker_dir: Path
    memory_seconds: float
    finetune_seconds: float = 0.0
    finetune_steps: int = 0
    a2e_finetune_seconds: float = 0.0
    a2e_finetune_steps: int = 0
    a2e_adapted: bool = False        # a2e_delta.safetensors was written (speech, a budget, a held-out gain)


FINETUNED_MODULES = ("fuse", "up", "out")      # the decoder side: what adaptation changes


HELD_OUT_FRACTION = 0.2        # the last part of the adaptation video judges the fine-tuning
HELD_OUT_FRAMES = 32           # at most this many of its frames (evenly spaced) are rendered per check
CHECKS = 8                     # held-out checks over a budget


@torch.no_grad()
def held_out_error(renderer: MemFaceRenderer, frames: RendererFrames, memory: dict, bf16: bool) -> float:
    """Mean L1 over ``frames`` (the held-out part of the adaptation video) where generation pastes the
    render: the mouth mask times the region around each frame's drawn lips (:data:`MOUTH_REGION`)."""
    size = renderer.crop_size
    mouth = renderer.mouth_mask[0, 0].float().numpy()
    weights = torch.from_numpy(np.stack([mouth * lips_mask(points, size, margin=MOUTH_REGION)
                                         for points in frames.points]))[:, None]           # (F, 1, S, S)
    renderer.eval()
    total, count = 0.0, 0
    for start, batch in zip(range(0, len(frames), 8), torch.utils.data.DataLoader(frames, batch_size=8)):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            output = renderer(batch["target"], batch["sketch"], batch["vertices"],
                              **{**memory, "exclude": batch["exclude"]} if memory else {})
        weight = weights[start:start + len(batch["target"])]
        error = ((output.raw.float() - batch["target"]).abs() * weight).sum((1, 2, 3)) / (3 * weight.sum((1, 2, 3)))
        total, count = total + float(error.sum()), count + len(error)
    return total / max(count, 1)


def finetune_renderer(renderer: MemFaceRenderer, shard_dir: Path, entries: int, steps: int | None,
                      seconds: float | None, learning_rate: float = 5e-5, batch_size: int = 4,
                      perceptual_weight: float = 0.1, bf16: bool = True, held_out_check: bool = True,
                      progress: bool = True) -> tuple[MemFaceRenderer, int]:
    """Fine-tune the renderer's decoder on one speaker's frames, reading the speaker's own memory
    under the leakage rule: eq. 6 without the GAN term (L1 + perceptual on the mouth box).

    Only the decoder side (:data:`FINETUNED_MODULES`) learns: the encoder and the memory's ``W_v``
    stay as trained on many people, so the memory values are encoded once, each step is cheaper
    (no gradient reaches the encoder), and a few seconds of one person cannot undo what the
    renderer knows about faces. bf16 autocast where the CPU or GPU supports it.

    Fine-tuning must not make things worse: the last :data:`HELD_OUT_FRACTION` of the video is held
    out, its mouth error is measured before tuning and :data:`CHECKS` times during it, and the
    weights of the best check are kept — the shared renderer's own, unchanged, when no check beats
    it (a few seconds of video can be too little to learn from). ``held_out_check=False`` trains on
    every frame and keeps the last weights.
    """
    frames = RendererFrames([shard_dir], crop_size=renderer.crop_size, frame_step=1)
    bank = frames.build_memory(entries)
    held_out = None
    if held_out_check and len(frames) >= 20:
        cut = int(frames.frames[int(len(frames) * (1 - HELD_OUT_FRACTION))])
        train_part, held_out = frames.split_at(cut)
        spaced = np.unique(np.linspace(0, len(held_out) - 1, min(HELD_OUT_FRAMES, len(held_out))).round().astype(int))
        held_out = held_out.take(spaced)
        train_part.use_memory(bank)
        held_out.use_memory(bank)
        frames = train_part
    keys = torch.from_numpy(bank.keys)
    patches = torch.from_numpy(bank.patches).float() / 255
    for name, parameter in renderer.named_parameters():
        parameter.requires_grad_(name.split(".")[0] in FINETUNED_MODULES)
    with torch.no_grad():
        memory = renderer.memory_inputs(keys, patches)                     # encoded once: W_v is frozen
    perceptual = None
    if perceptual_weight:
        from ..evaluation.perceptual import PerceptualMetric

        try:
            perceptual = PerceptualMetric(size=112)
        except (FileNotFoundError, ImportError) as err:
            logger.warning("fine-tuning with L1 only: perceptual weights unavailable (%s)", err)
    loader = torch.utils.data.DataLoader(frames, batch_size=batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.Adam([p for p in renderer.parameters() if p.requires_grad], lr=learning_rate)
    started, step = time.perf_counter(), 0
    best_error = held_out_error(renderer, held_out, memory, bf16) if held_out is not None else None
    base_error, base_state = best_error, copy.deepcopy(renderer.state_dict())
    best_state, next_check = None, 1
    budget = steps if steps is not None else 10**9

    def check() -> None:
        """Measure the held-out error at the next of the ``CHECKS`` points of the budget; keep the best weights."""
        nonlocal best_error, best_state, next_check
        done = step / steps if steps is not None else (time.perf_counter() - started) / seconds
        if held_out is None or done < next_check / CHECKS:
            return
        next_check = int(done * CHECKS) + 1
        error = held_out_error(renderer, held_out, memory, bf16)
        if error < best_error:
            best_error, best_state = error, copy.deepcopy(renderer.state_dict())
        renderer.train()

    renderer.train()
    bar = tqdm(total=steps, disable=not progress, desc="fine-tuning renderer", unit="step")
    while step < budget and (seconds is None or time.perf_counter() - started < seconds):
        for batch in loader:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                output = renderer(batch["target"], batch["sketch"], batch["vertices"],
                                  **{**memory, "exclude": batch["exclude"]} if memory else {})
                loss = renderer_loss(output.image.float(), batch["target"], renderer.patch_box, None, perceptual,
                                     perceptual_weight=perceptual_weight, gan_weight=0.0).total
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.4f}")
            if step >= budget or (seconds is not None and time.perf_counter() - started >= seconds):
                break
            check()
    bar.close()
    if held_out is not None:
        step_error = held_out_error(renderer, held_out, memory, bf16)
        if step_error < best_error:
            best_error, best_state = step_error, None                     # the last weights are the best
        elif best_state is None:
            renderer.load_state_dict(base_state)
            logger.info("fine-tuning did not lower the held-out mouth error (%.4f); keeping the shared renderer",
                        best_error)
        else:
            renderer.load_state_dict(best_state)
        logger.info("fine-tuned renderer: held-out mouth L1 %.4f (before %.4f)", best_error, base_error)
    for parameter in renderer.parameters():
        parameter.requires_grad_(True)
    renderer.eval()
    return renderer, step


def adapt_speaker(video: str | os.PathLike, out_dir: str | os.PathLike, name: str | None = None,
                  entries: int = 300, renderer: MemFaceRenderer | str | os.PathLike | None = None,
                  finetune_steps: int | None = None, finetune_seconds: float | None = None,
                  max_seconds: float = 60.0, progress: bool = True,
                  on_stage: Callable[[str], None] | None = None,
                  max_short_side: int | None = MAX_SHORT_SIDE, held_out_check: bool = True,
                  a2e=None, a2e_finetune_steps: int | None = None,
                  a2e_finetune_seconds: float | None = None, articulation: bool = True) -> AdaptationResult:
    """Memory-only adaptation, plus renderer fine-tuning when a renderer and a budget are given
    (kept only where it lowers the mouth error on the video's held-out end: see :func:`finetune_renderer`;
    no delta is written when it does not).

    A video larger than ``max_short_side`` (default 1080p) is scaled down before tracking, so the stored
    template (and every later generation's output) is at most that size; ``None`` keeps its size.

    With an a2e budget (``a2e_finetune_steps`` / ``a2e_finetune_seconds``) and speech in the video, the a2e
    model (``a2e``: a model, a folder or Hub id; default the bundled one) is fine-tuned on the speaker's lips
    too and stored as ``a2e_delta.safetensors`` when it lowers the held-out error (training/adapt_a2e.py).
    With ``articulation`` (the default) and speech in the video, the speaker's articulation gain for that a2e
    model (:func:`~memface_hub.training.adapt_a2e.articulation_gain`) is stored in ``speaker.json``.

    ``on_stage``, when given, is called with each stage's name as it starts (``"tracking"``,
    ``"memory"``, ``"fine-tuning"`` when there is one) and with ``"done"`` at the end: what a UI
    needs to show progress (the Space passes it to ``gr.Progress``).
    """
    report = on_stage or (lambda stage: None)
    started = time.perf_counter()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise MemFaceInputError(out_dir, "is a file; the speaker memory needs a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / SPEAKER_FILE).exists():
        raise MemFaceInputError(out_dir, "exists and is not a speaker memory; refusing to overwrite")
    finetune = renderer is not None and bool(finetune_steps or finetune_seconds)
    if finetune and not isinstance(renderer, MemFaceRenderer):
        renderer = MemFaceRenderer.from_pretrained(renderer)           # a bad --renderer fails before any work
    a2e = load_a2e(a2e) if a2e_finetune_steps or a2e_finetune_seconds or articulation else None  # a bad --a2e too
    # Everything is built in a staging folder renamed over ``out_dir`` at the end: an interruption or an
    # error leaves the previous speaker (and its delta) as it was.
    with temporary_directory("memface-adapt-") as work, atomic_folder(out_dir) as staging:
        report("tracking")
        result = preprocess_clip(video, work, require_audio=False, max_seconds=max_seconds, progress=progress,
                                 max_short_side=max_short_side)
        shard_dir = Path(work) / result.clip_id
        report("memory")
        memory = SpeakerMemory.build(shard_dir, num_entries=entries, name=name, source_video=video)
        speech = speech_clip(shard_dir, a2e) if a2e is not None else None      # read once, for both uses
        gain = articulation_gain(a2e, speech) if articulation else None
        if gain is not None:
            memory.meta["articulation"] = {"gain": round(gain, 4), "a2e": a2e_fingerprint(a2e)}
            logger.info("articulation gain %.2f (the speaker's lips move %.2f× the shared a2e's)", gain, gain)
        memory.save_pretrained(staging)
        outcome = AdaptationResult(out_dir, time.perf_counter() - started)
        if finetune:
            base = copy.deepcopy(renderer).float().to(memory_format=torch.contiguous_format)  # trains in float32
            tuned = copy.deepcopy(base)
            report("fine-tuning")
            tuned_started = time.perf_counter()
            tuned, steps = finetune_renderer(tuned, shard_dir, entries, finetune_steps, finetune_seconds,
                                             held_out_check=held_out_check, progress=progress)
            delta = renderer_delta(base, tuned)
            if delta:                       # empty when fine-tuning did not beat the shared renderer
                save_arrays(staging / DELTA_FILE, delta, metadata={"format": "memface-renderer-delta", "version": "1"})
            outcome.finetune_seconds = time.perf_counter() - tuned_started
            outcome.finetune_steps = steps
        if a2e is not None and (a2e_finetune_steps or a2e_finetune_seconds):   # the speaker's own lip motion
            if not finetune:
                report("fine-tuning")
            tuned_a2e = adapt_a2e(a2e, speech, staging, a2e_finetune_steps, a2e_finetune_seconds,
                                  held_out_check=held_out_check, progress=progress)
            if tuned_a2e is not None:
                outcome.a2e_finetune_seconds, outcome.a2e_finetune_steps = tuned_a2e.seconds, tuned_a2e.steps
                outcome.a2e_adapted = tuned_a2e.kept
    logger.info("adapted speaker in %s: memory %.1f s, fine-tuning %.1f s (%d steps)", outcome.speaker_dir,
                outcome.memory_seconds, outcome.finetune_seconds, outcome.finetune_steps)
    report("done")
    return outcome
