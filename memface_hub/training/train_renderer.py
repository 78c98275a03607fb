"""Train the neural renderer with accelerate (eq. 6: L1 + perceptual + GAN), CPU or GPUs.

    memface train-renderer --shards data/shards --splits data/demo/corpus.json --out runs/renderer

The explicit memory bank is built from the training frames (Alg. 1); the leakage rule keeps
every frame from reading its own entry and its ±2 neighbours. Validation PSNR on the mouth box
each epoch, validation images written to ``<out>/val_epoch_XXX.png``, the best model via
``save_pretrained`` to ``<out>/best``, the training state in ``<out>/checkpoint`` for ``--resume``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..renderer import MemFaceRenderer, PatchDiscriminator
from .renderer_data import RendererFrames
from .run_state import resume_state, save_state, split_shards

logger = logging.getLogger(__name__)



@dataclass
class RendererTrainingConfig:
    """Everything a renderer run needs; saved as ``<out>/training_config.json``."""

    shards: str
    output_dir: str
    splits: str | None = None
    memory: str = "explicit"
    crop_size: int = 128
    base_channels: int = 16
    depth: int = 3
    memory_entries: int = 300
    frame_step: int = 2
    epochs: int = 10
    batch_size: int = 8
    learning_rate: float = 2e-4
    l1_weight: float = 1.0
    perceptual_weight: float = 0.1
    perceptual_size: int = 112
    gan_weight: float = 0.01
    max_steps: int | None = None
    seed: int = 0
    resume: bool = False
    progress: bool = True


def mouth_boxes(images: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    top, bottom, left, right = box
    return images[:, :, top:bottom, left:right]


def mouth_psnr(output: torch.Tensor, target: torch.Tensor, box) -> torch.Tensor:
    """PSNR ``(B,)`` on the mouth box of images in [0, 1] (uint8 quantised, as the metric)."""
    a = (mouth_boxes(output, box) * 255).round()
    b = (mouth_boxes(target, box) * 255).round()
    mse = ((a - b) ** 2).flatten(1).mean(1).clamp_min(1e-6)
    return 10 * torch.log10(255.0 ** 2 / mse)


def load_renderer_data(config: RendererTrainingConfig, progress: bool = True
                       ) -> tuple[RendererFrames, RendererFrames]:
    """Training and validation frames of ``config.shards``; the memory bank (Alg. 1) is built
    from the training frames only and read by both. Reusable across runs with the same data."""
    train_ids, val_ids = split_shards(config.shards, config.splits)
    root = Path(config.shards)
    train_set = RendererFrames([root / c for c in train_ids], config.crop_size, config.frame_step,
                               progress=progress)
    val_set = RendererFrames([root / c for c in val_ids], config.crop_size, config.frame_step * 4)
    val_set.use_memory(train_set.build_memory(config.memory_entries))
    return train_set, val_set


def train_renderer(config: RendererTrainingConfig,
                   data: tuple[RendererFrames, RendererFrames] | None = None) -> Path:
    """Run training (``config.epochs``, or stop after ``config.max_steps`` batches); ``data``
    is what :func:`load_renderer_data` returns, loaded here when not given. Returns ``<out>/best``."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from ..evaluation.perceptual import PerceptualMetric

    accelerator = Accelerator()
    set_seed(config.seed)
    out = Path(config.output_dir)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "training_config.json").write_text(json.dumps(asdict(config), indent=1))

    # 1. data and the memory bank (from training frames only)
    train_set, val_set = data or load_renderer_data(config, config.progress and accelerator.is_main_process)
    bank = train_set.bank

    # 2. models, losses, optimisers
    renderer = MemFaceRenderer(crop_size=config.crop_size, base_channels=config.base_channels, depth=config.depth,
                               memory=config.memory, implicit_slots=config.memory_entries,
                               crop_layout={k: v for k, v in train_set.layout.__dict__.items()})
    discriminator = PatchDiscriminator()
    perceptual = PerceptualMetric(size=config.perceptual_size).to(accelerator.device) if config.perceptual_weight else None
    keys = torch.from_numpy(bank.keys).to(accelerator.device)
    patches = torch.from_numpy(bank.patches).float().div(255).to(accelerator.device)
    generator = torch.Generator().manual_seed(config.seed)
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=config.batch_size, shuffle=True,
                                               generator=generator, drop_last=True)
    val_loader = torch.utils.data.DataLoader(val_set, batch_size=config.batch_size)
    optimizer = torch.optim.Adam(renderer.parameters(), lr=config.learning_rate, betas=(0.5, 0.999))
    optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=config.learning_rate, betas=(0.5, 0.999))
    renderer, discriminator, optimizer, optimizer_d, train_loader, val_loader = accelerator.prepare(
        renderer, discriminator, optimizer, optimizer_d, train_loader, val_loader)
    unwrapped = accelerator.unwrap_model(renderer)
    box = unwrapped.patch_box

    def render(batch):
        return renderer(batch["target"], batch["sketch"], batch["vertices"],
                        **unwrapped.memory_inputs(keys, patches, batch["exclude"]))

    state = resume_state(accelerator, out, config.resume,
                         {"epoch": 0, "step": 0, "best_val_psnr": None, "history": []})

    images_seen, seconds = 0, 0.0
    for epoch in range(state["epoch"], config.epochs):
        if config.max_steps is not None and state["step"] >= config.max_steps:
            break
        renderer.train()
        started = time.perf_counter()
        bar = tqdm(train_loader, disable=not (config.progress and accelerator.is_local_main_process),
                   desc=f"renderer epoch {epoch + 1}/{config.epochs}", unit="batch")
        for batch in bar:
            if config.max_steps is not None and state["step"] >= config.max_steps:
                break
            output = render(batch)
            fake, real = mouth_boxes(output.image, box), mouth_boxes(batch["target"], box)
            # discriminator (hinge)
            loss_d = F.relu(1 - discriminator(real)).mean() + F.relu(1 + discriminator(fake.detach())).mean()
            optimizer_d.zero_grad(set_to_none=True)
            accelerator.backward(loss_d)
            optimizer_d.step()
            # renderer: eq. 6
            l1 = (output.image - batch["target"]).abs().mean()
            loss = (config.l1_weight * l1 - config.gan_weight * discriminator(fake).mean()
                    + 0.01 * unwrapped.memory_regulariser())
            if perceptual is not None:
                loss = loss + config.perceptual_weight * perceptual(fake, real)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimizer.step()
            state["step"] += 1
            images_seen += batch["target"].shape[0] * accelerator.num_processes
            bar.set_postfix(l1=f"{l1.item():.4f}")
        seconds += time.perf_counter() - started
        # validation
        renderer.eval()
        totals = torch.zeros(2, device=accelerator.device)
        sample = None
        with torch.no_grad():
            for batch in val_loader:
                output = render(batch)
                totals += torch.stack([mouth_psnr(output.image, batch["target"], box).sum(),
                                       torch.tensor(float(len(batch["target"])), device=accelerator.device)])
                sample = sample or (batch["target"][:4], output.image[:4])
        totals = accelerator.reduce(totals, reduction="sum")
        psnr = float(totals[0] / totals[1].clamp_min(1))
        state["epoch"] = epoch + 1
        state["history"].append({"epoch": epoch + 1, "val_psnr_mouth": psnr})
        state["train_images_per_s"] = images_seen / max(seconds, 1e-9)
        improved = state["best_val_psnr"] is None or psnr > state["best_val_psnr"]
        if improved:
            state["best_val_psnr"] = psnr
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            if improved:
                unwrapped.save_pretrained(out / "best")
            if sample is not None:
                grid = torch.cat([torch.cat(list(sample[0]), 2), torch.cat(list(sample[1]), 2)], 1)
                image = (grid.permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
                cv2.imwrite(str(out / f"val_epoch_{epoch + 1:03d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            logger.info("epoch %d: val mouth PSNR %.2f dB%s", epoch + 1, psnr, " (best)" if improved else "")
        save_state(accelerator, out, state)
    accelerator.wait_for_everyone()
    return out / "best"
