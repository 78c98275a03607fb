"""The alternating update schedule of supplement B.2."""

from __future__ import annotations

from collections.abc import Iterable

import torch

PHASES = ("memory", "model", "joint")


class AlternatingSchedule:
    """In the first ``alternate_fraction`` of training, steps alternate between updating only
    the memory parameters (even steps) and only the rest of the model (odd steps); afterwards
    everything is updated together."""

    def __init__(self, total_steps: int, alternate_fraction: float = 0.5):
        if total_steps < 1 or not 0.0 <= alternate_fraction <= 1.0:
            raise ValueError(f"need total_steps ≥ 1 and 0 ≤ alternate_fraction ≤ 1, "
                             f"got {total_steps}, {alternate_fraction}")
        self.total_steps = total_steps
        self.alternate_until = int(total_steps * alternate_fraction)

    def phase(self, step: int) -> str:
        if step >= self.alternate_until:
            return "joint"
        return "memory" if step % 2 == 0 else "model"

    def mask_gradients(self, step: int, memory_parameters: Iterable[torch.nn.Parameter],
                       all_parameters: Iterable[torch.nn.Parameter]) -> str:
        """Drop the gradients of the group that must not move this step (optimisers skip ``grad=None``).

        Call after ``backward`` (and the gradient all-reduce) and before ``optimizer.step``.
        Returns the phase. Without memory parameters every step is ``"joint"``.
        """
        memory = {id(p) for p in memory_parameters}
        phase = self.phase(step) if memory else "joint"
        if phase == "joint":
            return phase
        for parameter in all_parameters:
            if (id(parameter) in memory) != (phase == "memory"):
                parameter.grad = None
        return phase
