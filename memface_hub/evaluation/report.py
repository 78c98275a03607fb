"""What every results script shares: the spread over seeds (:func:`mean_std`, one convention), the stamp of
what made a result (:func:`provenance`) and its table in a Markdown file (:func:`write_markdown_section`)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..arrays_io import write_text_atomic

# The one convention of every "mean ± std" in docs/results: the sample standard deviation (ddof=1, divided by
# n − 1) over the finite values, NaN left out; with fewer than two values there is no spread (None / JSON null).
STD_CONVENTION = "mean ± sample standard deviation (ddof=1) over seeds; NaN values left out"


def mean_std(values: Iterable[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (``ddof=1``) of ``values``, NaN values left out.

    Returns ``(nan, None)`` for no finite value and ``(mean, None)`` for one: a single seed has no spread.
    """
    array = np.asarray(list(values), dtype=np.float64)
    array = array[~np.isnan(array)]
    if array.size == 0:
        return math.nan, None
    return float(array.mean()), (float(array.std(ddof=1)) if array.size > 1 else None)


def format_mean_std(mean: float, std: float | None, digits: int) -> str:
    """``"0.866 ± 0.008"``, or ``"0.866"`` when there is no spread (one seed)."""
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def write_markdown_section(readme: str | os.PathLike, key: str, heading: str, body: str) -> Path:
    """Replace the text between ``key``'s markers in ``readme`` with ``body``; append a ``## heading``
    section holding the markers when they are missing (a new file starts with ``# Results``)."""
    readme = Path(readme)
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    text = readme.read_text() if readme.exists() else "# Results\n"
    block = f"{start}\n{body}\n{end}"
    if start in text and end in text:
        text = text[:text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + f"\n\n## {heading}\n\n" + block + "\n"
    return write_text_atomic(readme, text)


def provenance(config: dict | None = None) -> dict:
    """What made a result: ``git_commit`` (``+dirty`` with uncommitted changes outside ``docs/results/``),
    ``memface_version``, the ``command`` line and the ``config`` — to store in every results JSON."""
    import subprocess
    import sys

    from .. import __version__

    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
        # results the scripts write themselves (docs/results/) do not make the code that made them dirty
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)docs/results"], cwd=root, capture_output=True, text=True,
                               timeout=10).stdout.strip()
        if commit and dirty:
            commit += "+dirty"
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"git_commit": commit, "memface_version": __version__,
            "command": " ".join([Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]]),
            "config": config or {}}
