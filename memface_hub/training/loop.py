"""The training loop both models share: accelerate, seeding, resume, per-epoch evaluation, checkpoints, and
the best model written with ``save_pretrained``.

A run lives in ``config.output_dir``:

* ``training_config.json``: the config (:mod:`.configs`);
* ``checkpoint/``: accelerate's state of every prepared object (weights, optimisers, schedulers, RNGs),
  saved after every epoch, and ``trainer_state.json``: epoch, step, the best validation figure, the history
  (:mod:`.run_state`); a run started with ``resume=True`` continues from them;
* ``best/``: the model of the best epoch so far (``save_pretrained``).

What differs between the models (data, losses, the evaluation) stays in ``train_a2e.py`` and
``train_renderer.py``, which read as::

    run = TrainingRun(config, best_metric="best_val_rmse", higher_is_better=False, throughput="train_frames_per_s")
    ... data, model, optimiser; run.accelerator.prepare(...)
    run.resume()
    for epoch in run.epochs():
        for batch in run.batches(loader, f"epoch {epoch + 1}"):
            ... one optimisation step ...
            run.step_done(items=len(batch), loss=...)
        run.end_epoch(epoch, model, score=..., metrics={...})
    return run.finish()
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from pathlib import Path

from tqdm.auto import tqdm

from .run_state import resume_state, save_state

logger = logging.getLogger(__name__)


class TrainingRun:
    """The scaffolding of one run; ``best_metric`` names the state's best validation figure
    (``higher_is_better`` says which way is better) and ``throughput`` the state's items-per-second key."""

    def __init__(self, config, *, best_metric: str, higher_is_better: bool, throughput: str,
                 mixed_precision: str | None = None):
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        self.accelerator = Accelerator(mixed_precision=mixed_precision)
        set_seed(config.seed)
        self.config, self.out = config, Path(config.output_dir)
        self.best_metric, self.higher_is_better, self.throughput = best_metric, higher_is_better, throughput
        if self.accelerator.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "training_config.json").write_text(json.dumps(asdict(config), indent=1))
        self.state: dict = {}
        self._items, self._seconds, self._epoch_seconds = 0, 0.0, 0.0   # this session's training (not evaluation)
        self._bar = None

    def resume(self) -> dict:
        """Load ``checkpoint/`` into the prepared objects when resuming (call after ``accelerator.prepare``)."""
        self.state = resume_state(self.accelerator, self.out, self.config.resume,
                                  {"epoch": 0, "step": 0, self.best_metric: None, "history": []})
        if self.state["epoch"]:
            logger.info("%s: resumed from epoch %d (step %d)", self.out, self.state["epoch"], self.state["step"])
        return self.state

    def epochs(self, max_steps: int | None = None) -> Iterator[int]:
        """The epochs still to train (0-based), stopping early once ``max_steps`` batches are done."""
        for epoch in range(self.state["epoch"], self.config.epochs):
            if max_steps is not None and self.state["step"] >= max_steps:
                return
            yield epoch

    def batches(self, loader: Iterable, description: str, max_steps: int | None = None) -> Iterator:
        """One epoch of ``loader`` under a progress bar, timed, stopping once ``max_steps`` batches are done."""
        started = time.perf_counter()
        self._bar = tqdm(loader, disable=not (self.config.progress and self.accelerator.is_local_main_process),
                         desc=description, unit="batch")
        for batch in self._bar:
            if max_steps is not None and self.state["step"] >= max_steps:
                break
            yield batch
        self._epoch_seconds = time.perf_counter() - started
        self._seconds += self._epoch_seconds

    def step_done(self, items: int, **postfix: str) -> None:
        """Count one optimisation step of ``items`` training items (over all processes)."""
        self.state["step"] += 1
        self._items += items
        if self._bar is not None and postfix:
            self._bar.set_postfix(**postfix)

    def end_epoch(self, epoch: int, model, score: float, metrics: dict,
                  on_main: Callable[[bool], None] | None = None) -> bool:
        """Record the epoch (history, best figure, throughput, training seconds over resumes), write the
        best model with ``save_pretrained`` when ``score`` improved, call ``on_main(improved)`` on the main
        process (images, logs), and save the checkpoint. Returns whether the epoch was the best so far."""
        state = self.state
        state["train_seconds"] = state.get("train_seconds", 0.0) + self._epoch_seconds   # over resumes too
        state["epoch"] = epoch + 1
        state["history"].append({"epoch": epoch + 1, **metrics})
        best = state[self.best_metric]
        improved = best is None or (score > best if self.higher_is_better else score < best)
        if improved:
            state[self.best_metric] = score
        state[self.throughput] = self._items / max(self._seconds, 1e-9)
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            if improved:
                model.save_pretrained(self.out / "best")
            if on_main is not None:
                on_main(improved)
        save_state(self.accelerator, self.out, state)
        return improved

    def finish(self) -> Path:
        """Wait for every process; the best model's folder."""
        self.accelerator.wait_for_everyone()
        return self.out / "best"
