"""Result tables in Markdown files: a section between ``<!-- key:start -->`` / ``<!-- key:end -->`` markers."""

from __future__ import annotations

import os
from pathlib import Path

from ..arrays_io import write_text_atomic


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
    """What made a result: ``git_commit`` (``+dirty`` with uncommitted changes), ``memface_version``,
    the ``command`` line and the ``config`` — to store in every results JSON."""
    import subprocess
    import sys

    from .. import __version__

    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        if commit and dirty:
            commit += "+dirty"
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"git_commit": commit, "memface_version": __version__,
            "command": " ".join([Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]]),
            "config": config or {}}
