"""Train the audio-to-expression model with accelerate (CPU, one GPU or many).

    memface train-a2e --shards data/shards --splits data/demo/corpus.json --out runs/a2e
    accelerate launch --num_processes 4 -m memface_hub.cli train-a2e ...   # same code, several processes

Eq. 4 losses, the alternating memory/model updates of supplement B.2 in the first half, validation
every epoch. The scaffolding (accelerate, seeding, ``--resume`` from ``<out>/checkpoint``, the best model
written with ``save_pretrained`` to ``<out>/best``) is the shared :class:`~.loop.TrainingRun`; every
hyper-parameter is a field of :class:`~.configs.A2ETrainingConfig`.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..a2e import MemFaceAudioToExpression
from ..audio import build_frontend
from ..data.a2e_clips import A2EWindows, augmented_clips, load_a2e_clips
from ..face.mouth_model import MouthModel
from ..io.shards import fit_mouth_model
from ..parallel import limit_worker_threads
from .configs import A2ETrainingConfig
from .loop import TrainingRun
from .losses import a2e_loss
from .run_state import STATE_FILE, split_shards
from .schedules import AlternatingSchedule

logger = logging.getLogger(__name__)


def real_clips(clips: list, splits: str | None) -> list:
    """The real clips of ``clips`` (``source: real`` in a multi-person ``corpus.json``; none without one)."""
    corpus = json.loads(Path(splits).read_text()).get("clips") if splits else None
    return [clip for clip in clips if isinstance(corpus, dict) and corpus.get(clip.clip_id, {}).get("source") == "real"]


def weigh_real_clips(clips: list, splits: str | None, repeat: int) -> list:
    """``clips`` with each real clip ``repeat`` times: a few minutes of real voices then weigh more beside
    the synthetic ones."""
    if repeat <= 1 or not splits:
        return list(clips)
    return list(clips) + real_clips(clips, splits) * (repeat - 1)


def explicit_memory_from_clips(clips, slots: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The a2e ablation's explicit memory: ``slots`` random valid training frames, features → expressions."""
    features = np.concatenate([c.features[c.valid] for c in clips])
    expressions = np.concatenate([c.expressions[c.valid] for c in clips])
    chosen = np.random.default_rng(seed).choice(len(features), size=slots, replace=len(features) < slots)
    return features[chosen], expressions[chosen]


def _evaluate(model, loader, accelerator, config: A2ETrainingConfig) -> dict:
    """Validation loss and vertex RMSE (canonical units), gathered over processes."""
    model.eval()
    sums = torch.zeros(3, device=accelerator.device)  # loss·frames, squared vertex error, frames
    unwrapped = accelerator.unwrap_model(model)
    with torch.no_grad():
        for batch in loader:
            output = model(batch["features"], batch["padding"])
            vertices = unwrapped.vertices(output.expressions, batch["neutral"])
            target = unwrapped.vertices(batch["expressions"], batch["neutral"])
            mask = batch["mask"]
            loss = a2e_loss(output.expressions, batch["expressions"], vertices, target, mask,
                            unwrapped.memory_regulariser(), config.expression_weight, config.vertex_weight,
                            config.regulariser_weight, config.velocity_weight)
            frames = mask.sum()
            squared = (((vertices - target) ** 2).mean(dim=(-1, -2)) * mask).sum()
            sums += torch.stack([loss.total * frames, squared, frames.float()])
    sums = accelerator.reduce(sums, reduction="sum")
    frames = sums[2].clamp_min(1.0)
    model.train()
    return {"loss": float(sums[0] / frames), "rmse": float(torch.sqrt(sums[1] / frames))}


def train_a2e(config: A2ETrainingConfig) -> Path:
    """Run training; returns the folder of the best model (``<out>/best``, lowest validation RMSE)."""
    run = TrainingRun(config, best_metric="best_val_rmse", higher_is_better=False, throughput="train_frames_per_s")
    accelerator, out = run.accelerator, run.out

    # 1. data: split, mouth model (fitted on the training clips), features (cached per shard)
    train_ids, val_ids = split_shards(config.shards, config.splits, key="a2e_splits", val_split=config.val_split)
    frontend = build_frontend(config.frontend)
    with accelerator.main_process_first():
        mouth_model_path = out / "mouth_model.safetensors"
        if accelerator.is_main_process and not mouth_model_path.exists():
            fit_mouth_model(config.shards, config.exp_dim, clip_ids=train_ids).save(mouth_model_path)
        mouth_model = MouthModel.load(mouth_model_path)
        train_clips = load_a2e_clips(config.shards, train_ids, frontend, mouth_model,
                                     progress=config.progress and accelerator.is_main_process)
        val_clips = load_a2e_clips(config.shards, val_ids, frontend, mouth_model)
    augmented = augmented_clips(config.shards, real_clips(train_clips, config.splits), frontend, config.real_augment,
                                config.seed, config.progress and accelerator.is_main_process)    # once, not repeated
    train_clips = weigh_real_clips(train_clips, config.splits, config.real_repeat) + augmented
    train_set = A2EWindows(train_clips, config.window, stride=config.window // 2)
    val_set = A2EWindows(val_clips, config.window)

    # 2. model
    model = MemFaceAudioToExpression(
        feature_dim=frontend.feature_dim, exp_dim=config.exp_dim, d_model=config.d_model, num_heads=config.num_heads,
        num_encoder_layers=config.num_layers, num_decoder_layers=config.num_layers, ff_dim=2 * config.d_model,
        dropout=config.dropout, memory=config.memory, memory_slots=config.memory_slots, memory_dim=config.memory_dim,
        frontend=frontend.config(), context_frames=config.window)
    model.set_mouth_model(mouth_model.basis)
    if config.memory == "explicit":
        model.set_explicit_memory(*map(torch.from_numpy, explicit_memory_from_clips(train_clips, config.memory_slots,
                                                                                   config.seed)))
    generator = torch.Generator().manual_seed(config.seed)
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=config.batch_size, shuffle=True,
                                               generator=generator, drop_last=len(train_set) > config.batch_size)
    val_loader = torch.utils.data.DataLoader(val_set, batch_size=config.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train_loader) / accelerator.num_processes)
    total_steps = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.learning_rate, total_steps=total_steps,
                                                    pct_start=0.1)
    model, optimizer, train_loader, val_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, val_loader, scheduler)
    unwrapped = accelerator.unwrap_model(model)
    schedule = AlternatingSchedule(total_steps, config.alternate_fraction)

    # 3. resume
    state = run.resume()

    # 4. train, validate, keep the best
    for epoch in run.epochs():
        model.train()
        for batch in run.batches(train_loader, f"a2e epoch {epoch + 1}/{config.epochs}"):
            output = model(batch["features"], batch["padding"])
            vertices = unwrapped.vertices(output.expressions, batch["neutral"])
            target = unwrapped.vertices(batch["expressions"], batch["neutral"])
            loss = a2e_loss(output.expressions, batch["expressions"], vertices, target, batch["mask"],
                            unwrapped.memory_regulariser(), config.expression_weight, config.vertex_weight,
                            config.regulariser_weight, config.velocity_weight)
            accelerator.backward(loss.total)
            phase = schedule.mask_gradients(state["step"], unwrapped.memory_parameters(), model.parameters())
            accelerator.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            run.step_done(int(batch["mask"].sum()) * accelerator.num_processes,
                          loss=f"{loss.total.item():.4f}", phase=phase)
        metrics = _evaluate(model, val_loader, accelerator, config)
        improved = run.end_epoch(epoch, unwrapped, score=metrics["rmse"], metrics=metrics)
        if accelerator.is_main_process:
            logger.info("epoch %d: val loss %.4f, val RMSE %.4f%s", epoch + 1, metrics["loss"], metrics["rmse"],
                        " (best)" if improved else "")
    return run.finish()


def run_is_finished(config: A2ETrainingConfig) -> bool:
    """Whether ``config.output_dir`` already holds a best model trained for ``config.epochs``."""
    out = Path(config.output_dir)
    state = out / STATE_FILE
    return state.is_file() and json.loads(state.read_text())["epoch"] >= config.epochs and (out / "best").is_dir()


def _single_thread_worker() -> None:
    limit_worker_threads()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("accelerate").setLevel(logging.WARNING)


def _train_or_resume(config: A2ETrainingConfig) -> Path:
    started = time.perf_counter()
    config = replace(config, resume=(Path(config.output_dir) / STATE_FILE).is_file())
    best = train_a2e(config)
    logger.info("%s trained in %.0f s", config.output_dir, time.perf_counter() - started)
    return best


def train_a2e_many(configs: list[A2ETrainingConfig], jobs: int = 1) -> list[Path]:
    """Train several runs (an ablation's variants and seeds); returns each run's ``best`` folder.

    Finished runs are skipped and interrupted ones resumed. With ``jobs > 1`` that many runs train
    side by side, each in its own single-threaded process: on a few CPU cores this small model
    trains faster that way than with several threads per run.
    """
    todo = [config for config in configs if not run_is_finished(config)]
    logger.info("%d of %d a2e runs to train (%d at a time)", len(todo), len(configs), jobs)
    if jobs <= 1:
        for config in todo:
            _train_or_resume(config)
    else:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_single_thread_worker) as pool:
            for future in [pool.submit(_train_or_resume, config) for config in todo]:
                future.result()
    return [Path(config.output_dir) / "best" for config in configs]
