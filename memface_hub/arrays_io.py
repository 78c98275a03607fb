"""Safe array files: safetensors only (no pickle), written atomically, size-checked on read."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from .errors import MemFaceInputError
from .staging import owner_tag, remove_stale

MAX_ARRAY_FILE_BYTES = 4 << 30


def save_arrays(path: str | os.PathLike, arrays: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> Path:
    """Write ``arrays`` to ``path`` as safetensors via a temporary file and a rename.

    Arrays are made C-contiguous first: safetensors stores raw buffers, so a strided view
    (e.g. an ``einsum`` result) would otherwise be saved scrambled.
    """
    path = Path(path)
    contiguous = {name: np.ascontiguousarray(array) for name, array in arrays.items()}
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        save_file(contiguous, tmp, metadata=metadata)
        os.chmod(tmp, 0o644)  # mkstemp makes owner-only files; artifacts are meant to be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file in the same folder and a rename."""
    path = Path(path)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_arrays(path: str | os.PathLike, max_bytes: int = MAX_ARRAY_FILE_BYTES) -> dict[str, np.ndarray]:
    """Read a safetensors file; a missing, oversized or malformed file is a :class:`MemFaceInputError`."""
    path = Path(path)
    if not path.is_file():
        raise MemFaceInputError(path, "file not found")
    size = path.stat().st_size
    if size > max_bytes:
        raise MemFaceInputError(path, f"file is {size} bytes, more than the {max_bytes} allowed")
    try:
        return load_file(str(path))
    except (SafetensorError, ValueError, OSError) as err:
        raise MemFaceInputError(path, f"not a valid safetensors file ({err})") from None


def check_arrays(arrays: dict[str, np.ndarray], expected: dict[str, tuple[tuple[int, ...], str]],
                 source: str | os.PathLike) -> None:
    """Exactly the ``expected`` names, each with its ``(shape, dtype)``, and finite floats; else a
    :class:`MemFaceInputError` naming the array."""
    missing, extra = set(expected) - set(arrays), set(arrays) - set(expected)
    if missing or extra:
        raise MemFaceInputError(source, f"arrays mismatch: missing {sorted(missing)}, unexpected {sorted(extra)}")
    for name, (shape, dtype) in expected.items():
        array = arrays[name]
        if array.shape != tuple(shape) or array.dtype != np.dtype(dtype):
            raise MemFaceInputError(source, f"array {name!r} is {array.shape} {array.dtype}, "
                                    f"expected {tuple(shape)} {np.dtype(dtype)}")
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise MemFaceInputError(source, f"array {name!r} contains non-finite values")


@contextmanager
def atomic_folder(directory: str | os.PathLike) -> Iterator[Path]:
    """Build a folder in a temporary sibling (yielded) and rename it over ``directory`` only when the
    block succeeds, so ``directory`` is always either the old folder or the complete new one.
    Files end up world-readable (0644, folders 0755)."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(directory.parent, (f".{directory.name}.old-", f".{directory.name}."))   # left by killed runs
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.{owner_tag()}", dir=directory.parent))
    try:
        yield staging
        for path in staging.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        staging.chmod(0o755)
        previous = None
        if directory.exists():                  # move the old folder aside first: never a moment without one
            previous = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-{owner_tag()}", dir=directory.parent))
            os.replace(directory, previous / directory.name)
        os.replace(staging, directory)
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)

