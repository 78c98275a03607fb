"""Adaptation to a new speaker: memory-only, and with renderer fine-tuning stored as a delta."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from conftest import tone, write_video
from memface_hub.arrays_io import load_arrays, save_arrays
from memface_hub.errors import MemFaceInputError
from memface_hub.io import read_frames
from memface_hub.renderer import MemFaceRenderer
from memface_hub.speaker import SpeakerMemory
from memface_hub.training.adapt import DELTA_FILE, adapt_speaker, apply_renderer_delta


@pytest.mark.slow
def test_adapt_to_the_real_carphone_speaker(carphone_path, tmp_path):
    # Memory only: the real (silent) carphone clip becomes a speaker memory.
    result = adapt_speaker(carphone_path, tmp_path / "carphone", entries=20, progress=False)
    memory = SpeakerMemory.from_pretrained(result.speaker_dir)
    assert memory.num_entries == 20 and result.memory_seconds > 0 and result.finetune_steps == 0
    assert not (result.speaker_dir / DELTA_FILE).exists()

    # With fine-tuning: a float16 delta is stored (that it reproduces the tuned renderer is checked by
    # tests/test_renderer.py::test_a_stored_delta_reproduces_the_tuned_renderer).
    torch.manual_seed(0)
    base = MemFaceRenderer(crop_size=64, base_channels=8, depth=2, value_channels=8, memory_dim=16).eval()
    base.save_pretrained(tmp_path / "renderer")
    tuned = adapt_speaker(carphone_path, tmp_path / "carphone_tuned", entries=16, renderer=tmp_path / "renderer",
                          finetune_steps=3, held_out_check=False, progress=False)
    assert tuned.finetune_steps == 3 and (tuned.speaker_dir / DELTA_FILE).exists()
    delta = load_arrays(tuned.speaker_dir / DELTA_FILE)
    assert delta and all(array.dtype == np.float16 for array in delta.values())
    applied = apply_renderer_delta(MemFaceRenderer.from_pretrained(tmp_path / "renderer"),
                                   tuned.speaker_dir / DELTA_FILE)
    base_state = base.state_dict()
    changed = [name for name, tensor in applied.state_dict().items() if not torch.equal(tensor, base_state[name])]
    assert changed
    delta["stowaway"] = np.zeros(1, np.float16)
    save_arrays(tmp_path / "bad.safetensors", delta)
    with pytest.raises(MemFaceInputError, match="stowaway"):
        apply_renderer_delta(base, tmp_path / "bad.safetensors")
    # a delta that goes bad after its first good tensor is refused whole: nothing is half-applied
    last = sorted(name for name in delta if name != "stowaway")[-1]
    half_bad = {name: change for name, change in delta.items() if name != "stowaway"}
    half_bad[last] = np.full_like(half_bad[last], np.nan)
    save_arrays(tmp_path / "half_bad.safetensors", half_bad)
    before = {name: tensor.clone() for name, tensor in base.state_dict().items()}
    with pytest.raises(MemFaceInputError, match="non-finite"):
        apply_renderer_delta(base, tmp_path / "half_bad.safetensors")
    assert all(torch.equal(tensor, before[name]) for name, tensor in base.state_dict().items())


def test_finetuning_that_hurts_the_held_out_frames_is_not_kept(tiny_shards):
    from memface_hub.data.renderer_frames import RendererFrames
    from memface_hub.training.adapt import finetune_renderer, held_out_error

    shard = sorted(path for path in tiny_shards.iterdir() if path.is_dir())[0]
    torch.manual_seed(0)
    base = MemFaceRenderer(crop_size=64, base_channels=8, depth=2, value_channels=8, memory_dim=16).eval()
    state = {name: tensor.clone() for name, tensor in base.state_dict().items()}
    frames = RendererFrames([shard], crop_size=64, frame_step=1)
    frames.use_memory(frames.build_memory(16))
    memory = base.memory_inputs(torch.from_numpy(frames.bank.keys), torch.from_numpy(frames.bank.patches).float() / 255)
    error = lambda renderer: held_out_error(renderer, frames, memory, False)  # noqa: E731
    # A learning rate far too large wrecks the decoder: unchecked, the wrecked weights are kept …
    wrecked, _ = finetune_renderer(copy.deepcopy(base), shard, 16, steps=4, seconds=None, learning_rate=5.0,
                                   perceptual_weight=0.0, held_out_check=False, progress=False)
    assert error(wrecked) > error(base)
    # … checked against the clip's held-out end, the shared renderer is kept as it was,
    kept, steps = finetune_renderer(copy.deepcopy(base), shard, 16, steps=4, seconds=None, learning_rate=5.0,
                                    perceptual_weight=0.0, progress=False)
    assert steps == 4
    assert all(torch.equal(tensor, state[name]) for name, tensor in kept.state_dict().items())
    # and a fine-tuning that helps is kept.
    tuned, _ = finetune_renderer(copy.deepcopy(base), shard, 16, steps=8, seconds=None, learning_rate=0.5,
                                 perceptual_weight=0.0, progress=False)
    assert error(tuned) < error(base)


def test_adapt_refuses_long_or_faceless_video(tmp_path):
    wall = write_video(tmp_path / "wall.mp4", [np.full((96, 96, 3), 120, np.uint8)] * 10, audio=tone(0.4))
    with pytest.raises(MemFaceInputError, match="no face found"):
        adapt_speaker(wall, tmp_path / "out", progress=False)
    with pytest.raises(MemFaceInputError, match="limit is 0.1 s"):
        adapt_speaker(wall, tmp_path / "out", max_seconds=0.1, progress=False)
    assert not (tmp_path / "out").exists()
    assert len(read_frames(wall)) == 10


@pytest.fixture
def tuned_speaker(carphone_path, tmp_path):
    """A speaker folder with a fine-tuned delta: what a second adaptation must not destroy."""
    torch.manual_seed(0)
    MemFaceRenderer(crop_size=64, base_channels=8, depth=2, value_channels=8, memory_dim=16).save_pretrained(
        tmp_path / "renderer")
    adapt_speaker(carphone_path, tmp_path / "speaker", entries=12, renderer=tmp_path / "renderer",
                  finetune_steps=2, held_out_check=False, progress=False)   # a delta whether or not it helps
    before = {path.name: path.read_bytes() for path in (tmp_path / "speaker").iterdir()}
    assert DELTA_FILE in before
    return tmp_path / "speaker", before


def _leftovers(folder):
    return sorted(path.name for path in folder.parent.iterdir() if path.name.startswith(f".{folder.name}."))


@pytest.mark.slow
def test_a_failed_or_interrupted_adaptation_leaves_the_previous_speaker_intact(carphone_path, tuned_speaker,
                                                                             tmp_path, monkeypatch):
    folder, before = tuned_speaker
    with pytest.raises(MemFaceInputError):                     # a bad --renderer fails before any work
        adapt_speaker(carphone_path, folder, renderer=tmp_path / "no_such_renderer", finetune_steps=2,
                      progress=False)
    import memface_hub.training.adapt as adapt_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(adapt_module, "finetune_renderer", interrupted)
    with pytest.raises(KeyboardInterrupt):                     # Ctrl-C (or SIGTERM, via the CLI) mid fine-tuning
        adapt_speaker(carphone_path, folder, renderer=tmp_path / "renderer", finetune_steps=2, progress=False)
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before
    assert _leftovers(folder) == []
    SpeakerMemory.from_pretrained(folder)


@pytest.mark.slow
def test_sigterm_during_adapt_cleans_up_and_keeps_the_previous_speaker(carphone_path, tuned_speaker, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    folder, before = tuned_speaker
    command = [sys.executable, "-m", "memface_hub.cli", "adapt", str(carphone_path), "--out", str(folder),
               "--renderer", str(tmp_path / "renderer"), "--finetune-seconds", "60", "--entries", "12"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not _leftovers(folder):    # wait until its staging folder exists
        time.sleep(0.2)
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, process.stderr[-2000:] if process.stderr else ""
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before
    assert _leftovers(folder) == []
    assert not [name for name in os.listdir(tmp_path) if name.startswith("memface-adapt-")]
