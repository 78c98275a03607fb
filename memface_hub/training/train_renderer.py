"""Train the neural renderer with accelerate (eq. 6: L1 + perceptual + GAN), CPU or GPUs.

    memface train-renderer --shards data/shards --splits data/demo/corpus.json --out runs/renderer

Each person's explicit memory bank is built from that person's own frames (Alg. 1); the
leakage rule keeps every frame from reading its own entry and its ±2 neighbours. With a
multi-person corpus (``memface build-corpus``: ``corpus.json`` names each clip's person) batches
are person-balanced and each reads its person's memory; a folder without person information is
one person (the synthetic demo corpus). Colour augmentation (gain, offset, gamma per batch,
applied alike to the frames and the memory) keeps the renderer from learning one skin tone. Validation PSNR on
the mouth box each epoch, validation images written to ``<out>/val_epoch_XXX.png``, the last model to
``<out>/last``. The scaffolding (accelerate, seeding, ``--resume`` from ``<out>/checkpoint``, the best model
written with ``save_pretrained`` to ``<out>/best``) is the shared :class:`~.loop.TrainingRun`; every
hyper-parameter is a field of :class:`~.configs.RendererTrainingConfig`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from ..data.renderer_frames import PeopleFrames, PersonBatchSampler
from ..renderer import MemFaceRenderer, PatchDiscriminator
from .configs import RendererTrainingConfig
from .loop import TrainingRun
from .losses import discriminator_hinge_loss, renderer_loss
from .run_state import split_shards

logger = logging.getLogger(__name__)


def mouth_boxes(images: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    top, bottom, left, right = box
    return images[:, :, top:bottom, left:right]


def mouth_psnr(output: torch.Tensor, target: torch.Tensor, box) -> torch.Tensor:
    """PSNR ``(B,)`` on the mouth box of images in [0, 1] (uint8 quantised, as the metric)."""
    a = (mouth_boxes(output, box) * 255).round()
    b = (mouth_boxes(target, box) * 255).round()
    mse = ((a - b) ** 2).flatten(1).mean(1).clamp_min(1e-6)
    return 10 * torch.log10(255.0 ** 2 / mse)


def people_of(clip_ids: list[str], splits: str | None) -> dict[str, list[str]]:
    """Person → clip ids, from the ``clips`` of a multi-person ``corpus.json``; without that
    information all clips are one person."""
    clips = {}
    if splits:
        data = json.loads(Path(splits).read_text())
        clips = data.get("clips", {}) if isinstance(data.get("clips"), dict) else {}
    people: dict[str, list[str]] = {}
    for clip_id in clip_ids:
        people.setdefault(str(clips.get(clip_id, {}).get("person", "speaker")), []).append(clip_id)
    return people


def load_renderer_data(config: RendererTrainingConfig, progress: bool = True) -> tuple[PeopleFrames, PeopleFrames]:
    """Training and validation frames of ``config.shards``, by person; each person's memory bank
    (Alg. 1) is built from that person's frames. Reusable across runs with the same data."""
    train_ids, val_ids = split_shards(config.shards, config.splits)
    root = Path(config.shards)
    sets = []
    for ids, step in ((train_ids, config.frame_step), (val_ids, config.frame_step * 2)):
        people = {name: [root / c for c in clips] for name, clips in people_of(ids, config.splits).items()}
        frames = PeopleFrames(people, config.crop_size, step, progress=progress)
        frames.build_memories(config.memory_entries)
        sets.append(frames)
    return sets[0], sets[1]


def person_weights(frames: PeopleFrames, splits: str | None, synthetic_weight: float) -> list[float]:
    """Sampling weight per person: 1 for a person with real footage, ``synthetic_weight`` otherwise."""
    sources = {}
    if splits:
        data = json.loads(Path(splits).read_text())
        for info in (data.get("clips") or {}).values() if isinstance(data.get("clips"), dict) else []:
            sources.setdefault(info.get("person"), set()).add(info.get("source"))
    return [synthetic_weight if sources.get(name) == {"synthetic"} else 1.0 for name in frames.names]


def warm_start(renderer: MemFaceRenderer, folder: str | Path) -> None:
    """Copy the weights of the renderer in ``folder`` whose names and shapes match (the ablation's
    variants differ only in their memory layers); a convolution that gained input channels keeps the
    old ones and gets zeros for the new, so the warm-started network computes what the old one did;
    the others keep their initialisation, and are logged."""
    source = MemFaceRenderer.from_pretrained(folder).state_dict()
    state = renderer.state_dict()
    matched = {name: value for name, value in source.items() if name in state and state[name].shape == value.shape}
    for name, value in source.items():      # a conv with more input channels (the retrieved mouth): zeros for them
        target = state.get(name)
        if (name not in matched and target is not None and value.dim() == 4 and target.shape[0] == value.shape[0]
                and target.shape[2:] == value.shape[2:] and target.shape[1] > value.shape[1]):
            matched[name] = torch.cat([value, value.new_zeros(target.shape[0], target.shape[1] - value.shape[1],
                                                              *value.shape[2:])], dim=1)
    renderer.load_state_dict({**state, **matched})
    fresh = sorted(set(state) - set(matched))
    if fresh:
        logger.info("warm start from %s: %d tensors copied, %d new (%s)", folder, len(matched), len(fresh),
                    ", ".join(fresh[:6]) + (" …" if len(fresh) > 6 else ""))


def colour_augmentation(generator: torch.Generator) -> Callable[[torch.Tensor], torch.Tensor]:
    """A random per-channel gain, offset and gamma (one draw), to apply alike to every image of a
    batch and to its memory patches: images in [0, 1] → [0, 1]."""
    gain = 1 + (torch.rand(3, generator=generator) - 0.5) * 0.4                 # 0.8 … 1.2
    offset = (torch.rand(3, generator=generator) - 0.5) * 0.1                   # ±0.05
    gamma = float(torch.exp((torch.rand((), generator=generator) - 0.5) * 0.5))  # 0.78 … 1.28

    def apply(images: torch.Tensor) -> torch.Tensor:
        shape = (1, 3, 1, 1)
        return (images.clamp_min(0) ** gamma * gain.to(images).view(shape) + offset.to(images).view(shape)).clamp(0, 1)

    return apply


def memory_subset(bank_size: int, count: int | None, generator: torch.Generator) -> torch.Tensor:
    """Indices of the memory entries read this step (all, or a random ``count`` of them)."""
    if count is None or count >= bank_size:
        return torch.arange(bank_size)
    return torch.randperm(bank_size, generator=generator)[:count]


def train_renderer(config: RendererTrainingConfig,
                   data: tuple[PeopleFrames, PeopleFrames] | None = None) -> Path:
    """Run training (``config.epochs``, or stop after ``config.max_steps`` batches); ``data``
    is what :func:`load_renderer_data` returns, loaded here when not given. Returns ``<out>/best`` (highest
    validation mouth PSNR)."""
    from ..evaluation.perceptual import PerceptualMetric

    run = TrainingRun(config, best_metric="best_val_psnr", higher_is_better=True, throughput="train_images_per_s",
                      mixed_precision=config.mixed_precision)
    accelerator, out = run.accelerator, run.out

    # 1. data: frames by person, each person's memory bank from their own frames
    train_set, val_set = data or load_renderer_data(config, config.progress and accelerator.is_main_process)
    banks = [(torch.from_numpy(bank.keys), torch.from_numpy(bank.patches)) for bank in train_set.banks]
    val_banks = [(torch.from_numpy(bank.keys), torch.from_numpy(bank.patches)) for bank in val_set.banks]

    # 2. models, losses, optimisers
    renderer = MemFaceRenderer(crop_size=config.crop_size, base_channels=config.base_channels, depth=config.depth,
                               memory=config.memory, implicit_slots=config.memory_entries,
                               colour_normalise=config.colour_normalise, mouth_window=config.mouth_window,
                               memory_distance_prior=config.memory_distance_prior, memory_top_k=config.memory_top_k,
                               feather=config.feather, ring_width=config.ring_width,
                               crop_layout={k: v for k, v in train_set.layout.__dict__.items()})
    if config.init_from:
        warm_start(renderer, config.init_from)
    discriminator = PatchDiscriminator()
    perceptual = (PerceptualMetric(size=config.perceptual_size).to(accelerator.device) if config.perceptual_weight
                  else None)
    generator = torch.Generator().manual_seed(config.seed)
    sampler = PersonBatchSampler(train_set, config.batch_size,
                                 person_weights(train_set, config.splits, config.synthetic_weight), seed=config.seed)
    train_loader = torch.utils.data.DataLoader(train_set, batch_sampler=sampler)
    optimizer = torch.optim.Adam(renderer.parameters(), lr=config.learning_rate, betas=(0.5, 0.999))
    optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=config.learning_rate, betas=(0.5, 0.999))
    renderer, discriminator, optimizer, optimizer_d, train_loader = accelerator.prepare(
        renderer, discriminator, optimizer, optimizer_d, train_loader)
    unwrapped = accelerator.unwrap_model(renderer)
    box = unwrapped.patch_box

    def render(batch, bank, subset=None, augment=None):
        keys, patches = bank
        if subset is not None:
            keys, patches, batch["exclude"] = keys[subset], patches[subset], batch["exclude"][:, subset]
        patches = patches.to(accelerator.device).float() / 255
        if augment is not None:
            batch["target"], patches = augment(batch["target"]), augment(patches)
        return renderer(batch["target"], batch["sketch"], batch["vertices"],
                        **unwrapped.memory_inputs(keys.to(accelerator.device), patches, batch["exclude"]))

    state = run.resume()

    for epoch in run.epochs(config.max_steps):
        renderer.train()
        sampler.epoch = epoch
        for batch in run.batches(train_loader, f"renderer epoch {epoch + 1}/{config.epochs}", config.max_steps):
            bank = banks[int(batch["person"][0])]
            subset = memory_subset(len(bank[0]), config.memory_subset, generator)
            augment = colour_augmentation(generator) if config.colour_augment else None
            with accelerator.autocast():
                output = render(batch, bank, subset, augment)
                fake, real = mouth_boxes(output.image, box), mouth_boxes(batch["target"], box)
                loss_d = discriminator_hinge_loss(discriminator(real), discriminator(fake.detach()))
            optimizer_d.zero_grad(set_to_none=True)
            accelerator.backward(loss_d)
            optimizer_d.step()
            with accelerator.autocast():                                   # eq. 6
                losses = renderer_loss(output.image, batch["target"], box, discriminator, perceptual,
                                       unwrapped.memory_regulariser(), config.l1_weight, config.perceptual_weight,
                                       config.gan_weight, config.regulariser_weight)
                loss, l1 = losses.total, losses.l1
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimizer.step()
            run.step_done(batch["target"].shape[0] * accelerator.num_processes, l1=f"{l1.item():.4f}")
        # validation: each held-out person reads their own memory
        renderer.eval()
        totals = torch.zeros(2, device=accelerator.device)
        sample = None
        with torch.no_grad(), accelerator.autocast():
            for part, bank in zip(val_set.parts, val_banks):
                indices = list(range(accelerator.process_index, len(part), accelerator.num_processes))
                for start in range(0, len(indices), config.batch_size):
                    items = [part[i] for i in indices[start:start + config.batch_size]]
                    batch = torch.utils.data.default_collate(items)
                    batch = {key: value.to(accelerator.device) for key, value in batch.items()}
                    output = render(batch, bank)
                    totals += torch.stack([mouth_psnr(output.image.float(), batch["target"], box).sum(),
                                           torch.tensor(float(len(batch["target"])), device=accelerator.device)])
                    if sample is None or len(sample[0]) < 4:
                        pair = (batch["target"][:1], output.image[:1].float())
                        sample = pair if sample is None else (torch.cat([sample[0], pair[0]]),
                                                              torch.cat([sample[1], pair[1]]))
        totals = accelerator.reduce(totals, reduction="sum")
        psnr = float(totals[0] / totals[1].clamp_min(1))

        def last_model_and_images(improved: bool, epoch: int = epoch, sample=sample, psnr: float = psnr) -> None:
            unwrapped.save_pretrained(out / "last")
            if sample is not None:
                grid = torch.cat([torch.cat(list(sample[0]), 2), torch.cat(list(sample[1]), 2)], 1)
                image = (grid.permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
                cv2.imwrite(str(out / f"val_epoch_{epoch + 1:03d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            logger.info("epoch %d (step %d): val mouth PSNR %.2f dB%s, %.1f images/s", epoch + 1, state["step"], psnr,
                        " (best)" if improved else "", state["train_images_per_s"])

        run.end_epoch(epoch, unwrapped, score=psnr, metrics={"step": state["step"], "val_psnr_mouth": psnr},
                      on_main=last_model_and_images)
    return run.finish()
