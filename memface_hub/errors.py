"""The one exception type users see for bad input: a one-line message naming the input."""

from __future__ import annotations

import os


class MemFaceInputError(ValueError):
    """Bad input (a file, an argument, an artifact). ``str(err)`` is ``"<input>: <problem>"``."""

    def __init__(self, source: str | os.PathLike, problem: str):
        self.source = str(source)
        self.problem = " ".join(str(problem).split())  # always one line
        super().__init__(f"{self.source}: {self.problem}")
