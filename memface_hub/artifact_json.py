"""Artifact JSON files (configs, indexes, speaker.json): read with size, syntax, type and depth limits,
and checked field by field against a schema before anything they describe is allocated or spawned.
Pure Python (no torch), so light modules such as the audio front ends can use it."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import MemFaceInputError

MAX_CONFIG_BYTES = 64 * 1024
MAX_JSON_DEPTH = 8


def json_depth(value, limit: int = MAX_JSON_DEPTH, depth: int = 1) -> int:
    """Nesting depth of a parsed JSON value (stops counting past ``limit``)."""
    if depth > limit or not isinstance(value, (dict, list)):
        return depth
    children = value.values() if isinstance(value, dict) else value
    return max([json_depth(child, limit, depth + 1) for child in children] or [depth])


def read_json_file(path: str | os.PathLike, max_bytes: int = MAX_CONFIG_BYTES) -> dict:
    """A small JSON object from ``path``: size, syntax, type and depth checked; errors name the file."""
    path = Path(path)
    if path.stat().st_size > max_bytes:
        raise MemFaceInputError(path, f"is {path.stat().st_size} bytes; a config is at most {max_bytes}")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise MemFaceInputError(path, f"not valid JSON ({type(err).__name__})") from None
    if not isinstance(value, dict):
        raise MemFaceInputError(path, f"must hold a JSON object, not a {type(value).__name__}")
    if json_depth(value) > MAX_JSON_DEPTH:
        raise MemFaceInputError(path, f"nests deeper than {MAX_JSON_DEPTH} levels")
    return value


def check_config(config: dict, limits: dict, source, prefix: str = "") -> None:
    """Every field of a config against ``limits`` (name → (types, low, high), or name → a function
    ``check(value, source, field)`` for a nested object): unknown fields, wrong types (a bool is not a
    number) and out-of-range numbers are refused, naming the file and the field (``prefix`` + name),
    before anything is allocated."""
    unknown = sorted(set(config) - set(limits))
    if unknown:
        raise MemFaceInputError(source, f"unknown fields {[prefix + name for name in unknown[:5]]}")
    for name, value in config.items():
        field = prefix + name
        if callable(limits[name]):
            limits[name](value, source, field)
            continue
        types, low, high = limits[name]
        if value is None and type(None) in types:
            continue
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            raise MemFaceInputError(source, f"field {field!r} must be {'/'.join(t.__name__ for t in types)}, "
                                    f"got {type(value).__name__}")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and low is not None \
                and not (low <= value <= high and value == value):
            raise MemFaceInputError(source, f"field {field!r} must be in [{low}, {high}], got {value!r}")
