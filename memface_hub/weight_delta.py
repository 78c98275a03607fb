"""What adaptation stores beside a speaker memory: a float16 weight delta of a fine-tuned model.

Both adapted models use it (the renderer's ``renderer_delta.safetensors``, the a2e model's
``a2e_delta.safetensors``). A delta is untrusted input: :func:`add_weight_delta` checks every tensor —
its name (known to the model, and in the modules adaptation changes), shape, dtype (float16) and
values (finite) — before it adds any, so a refused file leaves the model as it was.
"""

from __future__ import annotations

import os
from collections.abc import Collection

import numpy as np
import torch
from torch import nn

from .errors import MemFaceInputError


def weight_delta(base: nn.Module, tuned: nn.Module, modules: Collection[str] | None = None) -> dict[str, np.ndarray]:
    """Float16 differences ``tuned − base`` of the floating-point tensors that changed (in ``modules``, the
    names' first parts, when given); empty when nothing did."""
    base_state, tuned_state = base.state_dict(), tuned.state_dict()
    return {name: (tuned_state[name] - base_state[name]).cpu().half().numpy() for name in base_state
            if (modules is None or name.split(".")[0] in modules) and base_state[name].is_floating_point()
            and not torch.equal(base_state[name], tuned_state[name])}


@torch.no_grad()
def add_weight_delta(model: nn.Module, delta: dict[str, np.ndarray], path: str | os.PathLike,
                     modules: Collection[str] | None = None) -> nn.Module:
    """Add ``delta`` (read from ``path``, named in errors) to ``model`` in place, after checking all of it:
    unknown names (or outside ``modules``), other shapes, not float16, or non-finite values are refused
    with a one-line :class:`MemFaceInputError`, and nothing is added."""
    state = model.state_dict()
    unknown = sorted(name for name in delta
                     if name not in state or (modules is not None and name.split(".")[0] not in modules))
    if unknown:
        raise MemFaceInputError(path, f"delta names tensors the model does not have or adaptation does not change: "
                                f"{unknown[:8]}")
    for name, change in delta.items():
        if tuple(change.shape) != tuple(state[name].shape) or change.dtype != np.float16:
            raise MemFaceInputError(path, f"delta {name!r} is {change.shape} {change.dtype}, expected "
                                    f"{tuple(state[name].shape)} float16")
        if not np.isfinite(change).all():
            raise MemFaceInputError(path, f"delta {name!r} contains non-finite values")
    for name, change in delta.items():                                 # all checked: nothing half-applied
        state[name] += torch.from_numpy(change.astype(np.float32)).to(state[name].device, state[name].dtype)
    model.load_state_dict(state, strict=True)
    return model
