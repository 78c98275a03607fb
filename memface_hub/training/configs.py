"""The training configs: every hyper-parameter of a run, once, with its help text and its valid range.

A config is a dataclass whose fields are made with :func:`option` (default, one line of help, range or
choices, and the command-line flag when it is not the field's name). From that one place come

* the checks: constructing a config validates every field (type, range, choices) and raises a one-line
  ``ValueError`` naming the field, before any data is read;
* the command line: :func:`add_config_arguments` adds one flag per field to an ``argparse`` parser
  (``memface train-a2e`` / ``train-renderer``) and :func:`config_from_arguments` builds the config back;
* ``<out>/training_config.json``, written by the training loop (:mod:`.loop`).

This module imports no torch, so building the command line stays cheap.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from typing import Any

_MISSING = dataclasses.MISSING


def option(default: Any = _MISSING, help: str = "", *, flag: str | None = None, minimum: float | None = None,
           maximum: float | None = None, above: float | None = None, choices: tuple | None = None,
           cli: bool = True, zero_means_none: bool = False, factory: Any = _MISSING) -> Any:
    """A config field. ``minimum``/``maximum`` bound it inclusively, ``above`` exclusively; ``flag`` is its
    command-line name (default ``--field-name``); ``cli=False`` keeps it off the command line;
    ``zero_means_none``: on the command line 0 stands for ``None`` (an optional count)."""
    metadata = {"help": help, "flag": flag, "minimum": minimum, "maximum": maximum, "above": above,
                "choices": choices, "cli": cli, "zero_means_none": zero_means_none}
    if factory is not _MISSING:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _types(hint) -> tuple[type, ...]:
    """The runtime types an annotation allows: ``int | None`` → ``(int, NoneType)``."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return tuple(t for arg in typing.get_args(hint) for t in _types(arg))
    return (typing.get_origin(hint) or hint,)


def validate_config(config) -> None:
    """Check every field of a config dataclass against its annotation and its :func:`option` range;
    raise ``ValueError("<Config>.<field> must be …, got …")`` on the first that does not fit."""
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        value, allowed, meta = getattr(config, field.name), _types(hints[field.name]), field.metadata
        where = f"{type(config).__name__}.{field.name}"
        if value is None and type(None) in allowed:
            continue
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        fits = (isinstance(value, bool) if bool in allowed and isinstance(value, bool)
                else not isinstance(value, bool) and (isinstance(value, allowed) or (float in allowed and numeric)))
        if not fits:
            names = " or ".join("None" if t is type(None) else t.__name__ for t in allowed)
            raise ValueError(f"{where} must be {names}, got {value!r}")
        if numeric and not math.isfinite(value):
            raise ValueError(f"{where} must be finite, got {value!r}")
        if meta.get("choices") is not None and value not in meta["choices"]:
            raise ValueError(f"{where} must be one of {', '.join(map(repr, meta['choices']))}, got {value!r}")
        if meta.get("minimum") is not None and value < meta["minimum"]:
            raise ValueError(f"{where} must be ≥ {meta['minimum']:g}, got {value!r}")
        if meta.get("maximum") is not None and value > meta["maximum"]:
            raise ValueError(f"{where} must be ≤ {meta['maximum']:g}, got {value!r}")
        if meta.get("above") is not None and value <= meta["above"]:
            raise ValueError(f"{where} must be > {meta['above']:g}, got {value!r}")


def _flag(field: dataclasses.Field) -> str:
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def add_config_arguments(parser: argparse.ArgumentParser, config_class: type) -> None:
    """One flag per command-line field of ``config_class``, with its help, default and choices: a field
    without a default is required; a bool that defaults to False is ``--flag``, one that defaults to True
    is ``--no-…``. Values are checked by the config itself (:func:`config_from_arguments`)."""
    hints = typing.get_type_hints(config_class)
    for field in dataclasses.fields(config_class):
        meta = field.metadata
        if not meta.get("cli", True):
            continue
        allowed = [t for t in _types(hints[field.name]) if t is not type(None)]
        kind = allowed[0]
        default = field.default if field.default is not _MISSING else None
        help_text = meta.get("help", "")
        if default is not None:
            help_text += f" (default: {default})"
        if kind is bool:
            flag = _flag(field) if not default else "--no-" + _flag(field)[2:]
            parser.add_argument(flag, dest=field.name, action="store_false" if default else "store_true",
                                help=f"turn off: {meta.get('help', '')}" if default else meta.get("help", ""))
            continue
        keywords = {"dest": field.name, "type": kind if kind in (int, float, str) else str, "help": help_text,
                    "metavar": _flag(field)[2:].replace("-", "_").upper()}
        if meta.get("choices") is not None:
            keywords["choices"] = list(meta["choices"])
        if field.default is _MISSING and field.default_factory is _MISSING:
            keywords["required"] = True
        else:
            keywords["default"] = default
        parser.add_argument(_flag(field), **keywords)


def config_from_arguments(config_class: type, args: argparse.Namespace, **given):
    """The config from parsed arguments (fields off the command line come from ``given`` or their
    defaults); a value out of range raises the config's one-line ``ValueError``."""
    values = {}
    for field in dataclasses.fields(config_class):
        if field.name in given:
            values[field.name] = given[field.name]
        elif field.metadata.get("cli", True) and hasattr(args, field.name):
            value = getattr(args, field.name)
            values[field.name] = None if field.metadata.get("zero_means_none") and value == 0 else value
    return config_class(**values)


@dataclass
class A2ETrainingConfig:
    """Everything an audio-to-expression run needs; saved as ``<out>/training_config.json``."""

    shards: str = option(help="folder of preprocessed clip shards")
    output_dir: str = option(help="run folder", flag="--out")
    splits: str | None = option(None, "JSON with {'splits': {'train': [...], 'val': [...]}} (the demo corpus.json); "
                                      "None: a hash split of the shard names")
    frontend: dict = option(help="audio front end config; on the command line --frontend NAME [--frontend-model ID]",
                            factory=lambda: {"name": "mel"}, cli=False)   # the offline default, chosen by the ablation
    memory: str = option("implicit", "memory variant (the paper's ablation)",
                         choices=("implicit", "none", "explicit"))
    memory_slots: int = option(1000, "memory size M", minimum=2)
    memory_dim: int = option(64, "memory slot width", minimum=1)
    exp_dim: int = option(16, "expression coefficients (mouth-model components)", minimum=1)
    d_model: int = option(128, "transformer width", minimum=1)
    num_heads: int = option(4, "attention heads", minimum=1)
    num_layers: int = option(2, "encoder and decoder layers each", flag="--layers", minimum=1)
    dropout: float = option(0.1, "dropout", minimum=0.0, maximum=1.0)
    epochs: int = option(30, "training epochs", minimum=1)
    batch_size: int = option(16, "windows per batch and process", minimum=1)
    learning_rate: float = option(1e-3, "peak learning rate (one-cycle)", flag="--lr", above=0.0)
    weight_decay: float = option(0.01, "AdamW weight decay", minimum=0.0)
    window: int = option(64, "training window in frames (also the model's inference window)", minimum=2)
    alternate_fraction: float = option(0.5, "share of training with the alternating memory/model updates (suppl. "
                                            "B.2)", minimum=0.0, maximum=1.0)
    expression_weight: float = option(1.0, "weight of the expression L1 of eq. 4", minimum=0.0)
    vertex_weight: float = option(1.0, "weight of the vertex L2 of eq. 4", minimum=0.0)
    regulariser_weight: float = option(0.01, "λ of the slot-diversity R of eq. 4", minimum=0.0)
    velocity_weight: float = option(0.0, "weight of a vertex-velocity L2 beside eq. 4 (frame-to-frame motion as "
                                         "the target's, not jitter; 0: the paper's loss)", minimum=0.0)
    real_repeat: int = option(1, "with a multi-person corpus.json: count real clips' windows this many times",
                              minimum=1)
    val_split: str = option("val", "the split of --splits whose clips pick the best model (e.g. val_real: the "
                                   "validation people's real clips of a multi-person corpus)")
    real_augment: int = option(0, "with a multi-person corpus.json: add this many augmented copies of each real "
                                  "clip (speed and pitch, reverberation, band-limiting, noise)", minimum=0)
    seed: int = option(0, "random seed", minimum=0)
    resume: bool = option(False, "continue from <out>/checkpoint")
    progress: bool = option(True, "progress bars", cli=False)

    def __post_init__(self) -> None:
        validate_config(self)


@dataclass
class RendererTrainingConfig:
    """Everything a renderer run needs; saved as ``<out>/training_config.json``."""

    shards: str = option(help="folder of preprocessed clip shards")
    output_dir: str = option(help="run folder", flag="--out")
    splits: str | None = option(None, "JSON with {'splits': {'train': [...], 'val': [...]}} (a corpus.json)")
    memory: str = option("explicit", "memory variant (the paper's ablation)", choices=("explicit", "none", "implicit"))
    crop_size: int = option(128, "training crop size", minimum=16)
    base_channels: int = option(16, "channels of the first encoder level", minimum=1)
    depth: int = option(3, "encoder/decoder levels", minimum=1)
    colour_normalise: bool = option(True, "identity from the inputs (see memface_hub.renderer)")
    mouth_window: bool = option(False, "the network sees only the window around the mouth box (crop 256 in real "
                                       "time)")
    memory_distance_prior: float = option(0.0, "read the memory entries whose mouth shape is near the query (0: "
                                               "learned attention only)", minimum=0.0)
    memory_top_k: int | None = option(None, "read at most k memory entries (None: all)", minimum=1)
    feather: int = option(6, "compositing feather in crop pixels", minimum=0)
    ring_width: float = option(0.08, "colour ring around the mouth box, fraction of the crop", above=0.0,
                               maximum=0.5)
    memory_entries: int = option(300, "memory entries N (Alg. 1)", flag="--entries", minimum=2)
    memory_subset: int | None = option(96, "memory entries read per training step (None, 0 on the command line: "
                                           "all)", minimum=1, zero_means_none=True)
    frame_step: int = option(2, "use every n-th frame", minimum=1)
    epochs: int = option(10, "training epochs", minimum=1)
    batch_size: int = option(8, "images per batch and process", minimum=1)
    learning_rate: float = option(2e-4, "Adam learning rate", above=0.0)
    l1_weight: float = option(1.0, "λ_1 of eq. 6", minimum=0.0)
    perceptual_weight: float = option(0.1, "λ_p of eq. 6 (0 skips the perceptual network)", minimum=0.0)
    perceptual_size: int = option(112, "side of the perceptual network's input", minimum=32)
    gan_weight: float = option(0.01, "λ_GAN of eq. 6", minimum=0.0)
    regulariser_weight: float = option(0.01, "λ_r of an implicit memory's R (the ablation's variant)", minimum=0.0)
    colour_augment: bool = option(True, "colour augmentation (gain, offset, gamma per batch)")
    synthetic_weight: float = option(0.5, "sampling weight of a synthetic-only person (a real one is 1)",
                                     minimum=0.0)
    init_from: str | None = option(None, "warm start from a renderer folder (same architecture)")
    mixed_precision: str = option("no", "bf16 autocast (CPUs with avx512-bf16, GPUs)", choices=("no", "bf16"))
    max_steps: int | None = option(None, "stop after this many batches, even mid-epoch (None: no limit)", minimum=1)
    seed: int = option(0, "random seed", minimum=0)
    resume: bool = option(False, "continue from <out>/checkpoint")
    progress: bool = option(True, "progress bars", cli=False)

    def __post_init__(self) -> None:
        validate_config(self)
