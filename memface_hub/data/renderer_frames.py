"""Neural-renderer training data: frames of each person's shards + that person's explicit memory bank.

Each item is a ground-truth aligned crop (the target), the sketch of its own tracked mouth
vertices (the "projected face"), those vertices (the memory query) and the leakage mask: a
frame never reads the memory entry of its own frame or of the ±2 frames around it (docs/DESIGN.md §5).

:class:`RendererFrames` holds one person; :class:`PeopleFrames` holds many, each with the memory
bank built from that person's own frames (Alg. 1), and draws **person-balanced batches**: every
batch comes from one person (so it reads one memory), people drawn with equal weight (or the
weights given), so a person with a long clip does not dominate.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from ..explicit_memory import LEAKAGE_FRAMES, MemoryBank, farthest_point_selection  # noqa: F401 (re-exported)
from ..face.crop import CropLayout
from ..face.sketch import draw_mouth_sketch, project_mouth
from ..io.shards import load_shard
from ..io.video import iter_frames


class RendererFrames(torch.utils.data.Dataset):
    """Frames of shards (one speaker) at ``crop_size``, every ``frame_step``-th valid frame."""

    def __init__(self, shard_paths: Sequence[str | os.PathLike], crop_size: int = 128, frame_step: int = 2,
                 progress: bool = False):
        self.crop_size = int(crop_size)
        crops, sketches, vertices, clips, frames, drawn = [], [], [], [], [], []
        self.layout: CropLayout | None = None
        for path in tqdm(shard_paths, disable=not progress, desc="loading frames"):
            shard = load_shard(path)
            layout = CropLayout(**shard.meta["crop_layout"])
            self.layout = self.layout or CropLayout(**{**shard.meta["crop_layout"], "size": self.crop_size})
            scale = self.crop_size / layout.size
            keep = [t for t in range(0, shard.num_frames, frame_step) if shard.valid[t]]
            wanted = set(keep)
            points = project_mouth(shard.mouth_vertices[keep], shard.poses.take(keep),
                                   shard.crop_affines[keep]) * scale             # (n, V, 2) in crop pixels
            position = 0
            for index, crop in enumerate(iter_frames(shard.crops_path)):
                if index not in wanted:
                    continue
                crops.append(cv2.resize(crop, (self.crop_size, self.crop_size), interpolation=cv2.INTER_AREA))
                sketches.append(draw_mouth_sketch(points[position], self.crop_size))
                drawn.append(points[position])
                vertices.append(shard.mouth_vertices[index])
                clips.append(Path(path).name)
                frames.append(index)
                position += 1
        if not crops:
            raise ValueError("no valid frames in the given shards")
        self.crops = np.stack(crops)                          # (F, S, S, 3) uint8
        self.sketches = np.stack(sketches)                    # (F, S, S, 3) uint8
        self.vertices = np.stack(vertices).astype(np.float32)  # (F, V, 3)
        self.points = np.stack(drawn).astype(np.float32)       # (F, V, 2) the mouth drawn, crop pixels
        self.clips = np.array(clips)
        self.frames = np.array(frames)
        self.bank: MemoryBank | None = None
        self.person_index = 0                                 # set by PeopleFrames: which person these frames are

    def __len__(self) -> int:
        return len(self.crops)

    def build_memory(self, num_entries: int = 300) -> MemoryBank:
        """Alg. 1 over these frames; patches are cut at the mouth box of the ``crop_size`` layout."""
        chosen = farthest_point_selection(self.vertices, num_entries)
        top, bottom, left, right = self.layout.mouth_box()
        patches = self.crops[chosen, top:bottom, left:right].transpose(0, 3, 1, 2)
        self.bank = MemoryBank(self.vertices[chosen], np.ascontiguousarray(patches), self.clips[chosen],
                               self.frames[chosen])
        return self.bank

    def take(self, keep: np.ndarray) -> RendererFrames:
        """A view of some frames (a bool mask or indices over items), without a memory bank."""
        part = copy.copy(self)
        part.crops, part.sketches, part.vertices = self.crops[keep], self.sketches[keep], self.vertices[keep]
        part.points = self.points[keep]
        part.clips, part.frames, part.bank = self.clips[keep], self.frames[keep], None
        return part

    def split_at(self, frame: int) -> tuple[RendererFrames, RendererFrames]:
        """The frames before ``frame`` and from ``frame`` on (e.g. the adaptation part and the test
        part of one clip), as two views without a memory bank."""
        return self.take(self.frames < frame), self.take(self.frames >= frame)

    def use_memory(self, bank: MemoryBank) -> None:
        """Read another bank (e.g. the training bank for validation frames)."""
        self.bank = bank

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        to_tensor = lambda image: torch.from_numpy(image).permute(2, 0, 1).float() / 255.0  # noqa: E731
        exclude = np.zeros(0, bool) if self.bank is None else self.bank.leakage(self.clips[item], self.frames[item])
        return {"target": to_tensor(self.crops[item]), "sketch": to_tensor(self.sketches[item]),
                "vertices": torch.from_numpy(self.vertices[item]), "exclude": torch.from_numpy(exclude),
                "person": torch.tensor(self.person_index)}


class PeopleFrames(torch.utils.data.ConcatDataset):
    """Frames of many people: one :class:`RendererFrames` (and one memory bank) per person.

    ``people`` maps a person's name to their shard folders. Items are those of the person's
    :class:`RendererFrames` plus ``person`` (index into :attr:`names`).
    """

    def __init__(self, people: dict[str, Sequence[str | os.PathLike]], crop_size: int = 128, frame_step: int = 2,
                 progress: bool = False):
        names, parts = [], []
        for name, paths in tqdm(sorted(people.items()), disable=not progress, desc="loading people", unit="person"):
            try:
                frames = RendererFrames(paths, crop_size, frame_step)
            except ValueError:
                continue                                   # no valid frames at this step: nothing to learn from
            frames.person_index = len(names)
            names.append(name)
            parts.append(frames)
        if not parts:
            raise ValueError("no valid frames for any person")
        super().__init__(parts)
        self.names, self.parts = names, parts
        self.layout = parts[0].layout
        self.crop_size = int(crop_size)

    def build_memories(self, num_entries: int = 300) -> list[MemoryBank]:
        """Alg. 1 over each person's own frames; returns the banks in :attr:`names` order."""
        return [part.build_memory(num_entries) for part in self.parts]

    @property
    def banks(self) -> list[MemoryBank]:
        return [part.bank for part in self.parts]


class PersonBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of ``batch_size`` indices of :class:`PeopleFrames`, each from one person drawn with
    probability ∝ ``weights`` (default: equal); ``num_batches`` per epoch (default: frames / batch)."""

    def __init__(self, dataset: PeopleFrames, batch_size: int, weights: Sequence[float] | None = None,
                 num_batches: int | None = None, seed: int = 0):
        self.offsets = np.concatenate([[0], np.cumsum([len(part) for part in dataset.parts])])
        weights = np.ones(len(dataset.parts)) if weights is None else np.asarray(weights, np.float64)
        if weights.shape != (len(dataset.parts),) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"need one non-negative weight per person ({len(dataset.parts)}), got {weights}")
        self.probabilities = weights / weights.sum()
        self.batch_size = int(batch_size)
        self.num_batches = int(num_batches or max(1, len(dataset) // self.batch_size))
        self.seed, self.epoch = int(seed), 0

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self):
        rng = np.random.default_rng((self.seed, self.epoch))
        self.epoch += 1
        for person in rng.choice(len(self.probabilities), size=self.num_batches, p=self.probabilities):
            start, stop = self.offsets[person], self.offsets[person + 1]
            count = stop - start
            yield (start + rng.choice(count, size=self.batch_size, replace=count < self.batch_size)).tolist()
