"""Pieces every training loop shares: the split of the shards, and the resumable run state."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..arrays_io import write_text_atomic
from ..data.a2e_clips import hash_split, read_splits
from ..io.shards import find_shards

STATE_FILE = "trainer_state.json"
CHECKPOINT_DIR = "checkpoint"


def split_shards(shards: str | os.PathLike, splits: str | os.PathLike | None,
                 key: str = "splits", val_split: str = "val") -> tuple[list[str], list[str]]:
    """``(train_ids, val_ids)`` of the finished shards under ``shards``: from a splits JSON (e.g. the demo
    ``corpus.json``; ``key`` as in :func:`read_splits`; ``val_split`` names the validation list, e.g.
    ``val_real``) or, without one, a stable hash split. Both must be non-empty."""
    available = [path.name for path in find_shards(shards)]
    split = read_splits(splits, key) if splits else hash_split(available)
    present = set(available)
    train = [c for c in split["train"] if c in present]
    if splits and val_split not in split:
        raise ValueError(f"{splits}: no split named {val_split!r} (it has {', '.join(sorted(split))})")
    val = [c for c in split.get(val_split, []) if c in present]
    if not train or not val:
        raise ValueError(f"{shards}: need shards for both train ({len(train)}) and {val_split} ({len(val)})")
    return train, val


def resume_state(accelerator, out: Path, resume: bool, initial: dict) -> dict:
    """Load ``<out>/checkpoint`` into the prepared objects and return the saved state, or ``initial``."""
    if resume and (out / CHECKPOINT_DIR).is_dir() and (out / STATE_FILE).is_file():
        accelerator.load_state(str(out / CHECKPOINT_DIR))
        return json.loads((out / STATE_FILE).read_text())
    return initial


def save_state(accelerator, out: Path, state: dict) -> None:
    """Save the accelerate checkpoint (all processes) and the JSON state (main process, atomically)."""
    accelerator.save_state(str(out / CHECKPOINT_DIR))
    if accelerator.is_main_process:
        write_text_atomic(out / STATE_FILE, json.dumps(state, indent=1))
