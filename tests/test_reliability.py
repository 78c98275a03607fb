"""Reliability (issue 16) on tiny generated fixtures: hostile artifact folders, huge-claim configs, fps
bombs, large templates, truncated inputs, interrupted runs (subprocess signals), a full disk (a failing
writer) and what killed runs leave behind. ``scripts/reliability.py`` runs the same classes at full size."""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT, tone, write_video
from memface_hub.a2e import MemFaceAudioToExpression
from memface_hub.errors import MemFaceInputError
from memface_hub.io.audio import load_audio, write_wav
from memface_hub.io.video import bounded_size, iter_frames, probe
from memface_hub.pipeline import DEMO_PIPELINE, DEMO_SPEAKER, MemFacePipeline, TemplateFrames, load_speaker
from memface_hub.speaker import SpeakerMemory
from memface_hub.staging import owner_tag, remove_stale, temporary_directory

HOUR = 3600


def copy_folder(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


@pytest.fixture(scope="module")
def pipe():
    pipe = MemFacePipeline.from_pretrained()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def speech(seconds: float) -> np.ndarray:
    """A tone with a syllable-rate envelope (the mouth moves)."""
    time_axis = np.arange(int(seconds * 16_000)) / 16_000
    return (tone(seconds) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * time_axis) ** 2)).astype(np.float32)


# ------------------------------------------------------------------ hostile folders and huge claims


@pytest.mark.parametrize("content, problem", [
    ("[" * 40_000 + "]" * 40_000, "is 80000 bytes"),                       # too big to be a config
    ("[" * 20_000 + "]" * 20_000, "not valid JSON|must hold a JSON object"),  # recursion bomb
    ('{"a": ' * 20 + "1" + "}" * 20, "nests deeper"),
    ("[1, 2]", "must hold a JSON object"),
    ("\xff\xfe not json", "not valid JSON"),
])
def test_every_artifact_json_is_size_depth_and_type_checked(tmp_path, content, problem):
    pipeline = copy_folder(DEMO_PIPELINE, tmp_path / "pipeline")
    speaker = copy_folder(DEMO_SPEAKER, tmp_path / "speaker")
    for path, load in ((pipeline / "model_index.json", lambda: MemFacePipeline.from_pretrained(pipeline)),
                       (pipeline / "a2e" / "config.json",
                        lambda: MemFaceAudioToExpression.from_pretrained(pipeline / "a2e")),
                       (speaker / "speaker.json", lambda: SpeakerMemory.from_pretrained(speaker))):
        original = path.read_bytes()
        path.write_text(content, encoding="utf-8", errors="surrogateescape")
        with pytest.raises(MemFaceInputError, match=problem) as refused:
            load()
        assert refused.value.source == str(path) and "\n" not in str(refused.value)
        path.write_bytes(original)


@pytest.mark.parametrize("frontend, field", [
    ({"name": "wav2vec2", "model_name_or_path": "LOCAL", "layer": -1, "device": "cpu", "resample": False},
     "frontend.model_name_or_path"),
    ({"name": "deepspeech", "model_name_or_path": "someone/pickled-model", "window": 16, "device": "cpu",
      "resample": False}, "frontend.model_name_or_path"),
    ({"name": "wav2vec2", "model_name_or_path": "facebook/wav2vec2-base-960h", "revision": "main"},
     "frontend.revision"),
    ({"name": "whisper"}, "frontend.name"),
    ({"name": "mel", "n_mels": 10**9}, "frontend.n_mels"),
    ({"name": "wav2vec2", "model_name_or_path": "facebook/wav2vec2-base-960h", "device": "cuda; rm -rf /"},
     "frontend.device"),
    ("mel", "frontend"),
])
def test_a_front_end_in_an_artifact_is_allowlisted_before_anything_is_loaded(tmp_path, monkeypatch, frontend, field):
    """A config that points the speech encoder at a local folder of pickles (or any checkpoint, revision or
    value the package does not allow) is refused naming the file and the field; torch.load is never reached."""
    folder = tmp_path / "evil"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "wav2vec2", "architectures": ["Wav2Vec2Model"]}))
    (folder / "pytorch_model.bin").write_bytes(b"not really a pickle")
    if isinstance(frontend, dict) and frontend.get("model_name_or_path") == "LOCAL":
        frontend["model_name_or_path"] = str(folder)
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: pytest.fail("torch.load was reached"))
    pipeline = copy_folder(DEMO_PIPELINE, tmp_path / "pipeline")
    for path in (pipeline / "a2e" / "config.json", pipeline / "model_index.json"):
        original = path.read_text()
        edit_json(path, frontend=frontend)
        with pytest.raises(MemFaceInputError, match=f"'{field}'") as refused:
            MemFacePipeline.from_pretrained(pipeline)
        assert refused.value.source == str(path)
        path.write_text(original)


def test_the_allowed_wav2vec2_checkpoint_is_pinned_and_loaded_from_safetensors_only(tmp_path):
    from memface_hub.audio import check_artifact_frontend
    from memface_hub.audio.wav2vec2 import SPEECH_MODEL_REVISIONS, WAV2VEC2_REVISION, SpeechEncoder

    assert SPEECH_MODEL_REVISIONS == {"facebook/wav2vec2-base-960h": WAV2VEC2_REVISION}
    assert len(WAV2VEC2_REVISION) == 40 and int(WAV2VEC2_REVISION, 16) >= 0       # a commit, not a branch
    check_artifact_frontend({"name": "wav2vec2", "model_name_or_path": "facebook/wav2vec2-base-960h", "layer": -1,
                             "device": "cpu", "resample": False}, "config.json")
    # a local checkpoint holding only pickled weights (built in Python, so not allowlisted) is still refused
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    model = Wav2Vec2Model(Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=16, conv_dim=(8,), conv_stride=(5,), conv_kernel=(10,),
                                         num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2))
    model.save_pretrained(tmp_path)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16_000).save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").rename(tmp_path / "pytorch_model.bin")     # "weights" safetensors can't read
    with pytest.raises(MemFaceInputError, match="cannot load safetensors weights"):
        SpeechEncoder(str(tmp_path))(np.zeros(1600, np.float32), 16_000)


@pytest.mark.parametrize("field, value", [("fps", 1e9), ("fps", 0), ("fps", "25"), ("num_entries", "many")])
def test_fps_bombs_and_mistyped_speaker_fields_are_refused_before_ffmpeg_runs(tmp_path, field, value):
    speaker = copy_folder(DEMO_SPEAKER, tmp_path / "speaker")
    edit_json(speaker / "speaker.json", **{field: value})
    with pytest.raises(MemFaceInputError, match="speaker.json"):
        SpeakerMemory.from_pretrained(speaker)


# ------------------------------------------------------------------ large templates


def test_bounded_size_keeps_the_aspect_within_1080p():
    assert bounded_size(3840, 2160) == (1920, 1080)
    assert bounded_size(2160, 3840) == (1080, 1920)
    assert bounded_size(1920, 1080) == (1920, 1080) and bounded_size(640, 480) == (640, 480)
    assert bounded_size(4000, 1000) == (1920, 480)                       # the long side is bounded too
    assert bounded_size(3840, 2160, None) == (3840, 2160)


def test_a_large_template_is_read_scaled_down_with_its_tracks(pipe):
    """The demo template (354×354) read with a 176-line bound: generation runs at 176×176 and matches the
    full-size generation scaled down, which it would not if the tracks were left unscaled."""
    import cv2

    from memface_hub.face.crop import box_in_frame

    audio = speech(0.6)
    full = pipe(audio, load_speaker("demo"), sampling_rate=16_000).frames
    small_speaker = load_speaker("demo", max_short_side=176)
    assert small_speaker.template_size == (176, 176)
    small = pipe(audio, small_speaker, sampling_rate=16_000).frames
    assert small.shape[1:] == (176, 176, 3)
    reference = np.stack([cv2.resize(frame, (176, 176), interpolation=cv2.INTER_AREA) for frame in full]).astype(float)
    unscaled = SpeakerMemory.from_pretrained(DEMO_SPEAKER)
    unscaled.template_size = (176, 176)                                   # frames scaled, tracks not: wrong
    wrong = pipe(audio, unscaled, sampling_rate=16_000).frames
    # compared where the mouth is painted (the mouth box of the first frames; the rest is the template's)
    boxes = np.array([box_in_frame(affine.astype(np.float64), tuple(small_speaker.meta["patch_box"]), 176, 176)
                      for affine in small_speaker.crop_affines[:len(full)]])
    x0, y0 = boxes[:, :2].min(0)
    x1, y1 = boxes[:, 2:].max(0)
    error = np.abs(small - reference)[:, y0:y1, x0:x1].mean()
    wrong_error = np.abs(wrong - reference)[:, y0:y1, x0:x1].mean()
    assert error < 0.6 * wrong_error, (error, wrong_error)


def test_a_large_adaptation_video_is_stored_at_the_bound(carphone_path, tmp_path):
    """Adapting with a 120-line bound stores a 146×120 template whose crop transforms, scaled back, find
    the same face in the original frames."""
    from memface_hub.face.crop import warp_to_crop
    from memface_hub.speaker import scale_tracks
    from memface_hub.training.adapt import adapt_speaker

    adapt_speaker(carphone_path, tmp_path / "speaker", entries=16, progress=False, max_short_side=120)
    speaker = SpeakerMemory.from_pretrained(tmp_path / "speaker")
    info = probe(speaker.template_path)
    assert (info.width, info.height) == (146, 120) and speaker.template_size is None
    stored = next(iter_frames(speaker.template_path, max_frames=1))
    original = next(iter_frames(carphone_path, max_frames=1))
    _, back = scale_tracks(speaker.poses, speaker.crop_affines, 176 / 146, 144 / 120)
    size = speaker.layout.size
    from_stored = warp_to_crop(stored, speaker.crop_affines[0].astype(np.float64), size).astype(float)
    from_original = warp_to_crop(original, back[0].astype(np.float64), size).astype(float)
    unscaled = warp_to_crop(original, speaker.crop_affines[0].astype(np.float64), size).astype(float)
    assert np.abs(from_stored - from_original).mean() < 0.5 * np.abs(from_stored - unscaled).mean()


def test_template_frames_on_disk_are_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    speaker = load_speaker("demo")
    frame_bytes = 354 * 354 * 3
    template = TemplateFrames(speaker, max_bytes=10 * frame_bytes)
    assert len(template) == 10 < len(speaker.poses)
    assert template.take(np.array([9, 0])).shape == (2, 354, 354, 3)
    (folder,) = tmp_path.glob("memface-template-*")
    assert (folder / "frames.npy").stat().st_size <= 10 * frame_bytes + 4096


# ------------------------------------------------------------------ truncated inputs


def test_truncated_audio_and_video_warn_with_how_much_was_read(tmp_path, caplog):
    rng = np.random.default_rng(0)
    whole = write_video(tmp_path / "whole.mp4", (rng.integers(0, 255, (64, 64, 3), np.uint8) for _ in range(100)),
                        audio=tone(4.0))
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[:len(data) // 2])
    write_wav(tmp_path / "whole.wav", tone(4.0), 16_000)
    wav = (tmp_path / "whole.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(wav[:len(wav) // 2])
    caplog.set_level(logging.WARNING)
    assert len(list(iter_frames(whole))) == 100 and len(load_audio(whole)) == 64_000
    assert not caplog.records                                            # whole files: not a word
    frames = len(list(iter_frames(cut)))
    samples = len(load_audio(cut))
    short_wav = len(load_audio(tmp_path / "cut.wav"))
    assert frames < 100 and samples < 64_000 and short_wav < 64_000
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 3, messages
    assert f"{cut}: truncated? read {frames} frames" in messages[0] and "claims 4.00 s" in messages[0]
    assert f"read {samples / 16_000:.2f} s of audio" in messages[1]
    assert str(tmp_path / "cut.wav") in messages[2] and "claims 4.00 s" in messages[2]


# ------------------------------------------------------------------ full disk, interruptions, leftovers


class FullDisk:
    """Stands in for imageio-ffmpeg's writer: accepts ``frames`` frames, then the disk is full."""

    def __init__(self, frames: int):
        self.frames = frames

    def __call__(self, path, *args, **kwargs):
        def writer():
            Path(path).write_bytes(b"partial")
            for _ in range(self.frames + 1):
                yield
            raise OSError(errno.ENOSPC, "No space left on device")
        return writer()


def test_a_full_disk_is_a_one_line_error_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    from memface_hub.cli import main

    monkeypatch.setattr("imageio_ffmpeg.write_frames", FullDisk(frames=5))
    write_wav(tmp_path / "speech.wav", speech(1.0), 16_000)
    (tmp_path / "talk.mp4").write_bytes(b"the previous video")
    code = main(["generate", "--audio", str(tmp_path / "speech.wav"), "--out", str(tmp_path / "talk.mp4")])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and error[-1].startswith("memface generate: error:") and "No space left" in error[-1]
    assert "Traceback" not in "\n".join(error)
    assert (tmp_path / "talk.mp4").read_bytes() == b"the previous video"            # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["speech.wav", "talk.mp4"]  # no staging left


def run_generate(tmp_path: Path, out: Path, audio: Path) -> subprocess.Popen:
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp"), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "memface_hub.cli", "generate", "--audio", str(audio), "--out",
                             str(out)], cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def wait_until_frames_are_written(process: subprocess.Popen, timeout: float = 120.0) -> list[str]:
    """Read the run's stderr (in a thread) until its progress bar shows frames made; returns what it read."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(lambda: process.stderr.read(64), "")), daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    while not re.search(r"\| *[1-9]\d*/\d+ \[", "".join(lines)):
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the run did not start generating: {''.join(lines)[-2000:]}")
        time.sleep(0.05)
    return lines


@pytest.mark.slow
def test_interrupted_generations_leave_nothing_behind_or_it_is_removed_next_time(tmp_path):
    """SIGTERM mid-generation: exit 143, no output, no staging beside it, no template frames in the temp
    folder. SIGKILL leaves them (nothing can run), and the next run removes them once their owner is gone."""
    (tmp_path / "tmp").mkdir()
    write_wav(tmp_path / "speech.wav", speech(30.0), 16_000)
    out = tmp_path / "out" / "talk.mp4"
    out.parent.mkdir()
    staged = lambda: list(out.parent.glob(".memface-write-*")) and list((tmp_path / "tmp").glob("memface-template-*"))  # noqa: E731

    for sent, expected in ((signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGKILL, -signal.SIGKILL)):
        process = run_generate(tmp_path, out, tmp_path / "speech.wav")
        read = wait_until_frames_are_written(process)
        assert staged()
        process.send_signal(sent)
        process.wait(timeout=60)
        time.sleep(0.2)                                      # the reader thread takes the last words
        stderr = "".join(read)
        assert process.returncode == expected, stderr[-2000:]
        assert "Traceback" not in stderr and not out.exists()
        if sent == signal.SIGTERM:
            assert not list(out.parent.iterdir()) and not list((tmp_path / "tmp").iterdir())
    leftovers = list(out.parent.iterdir()) + list((tmp_path / "tmp").iterdir())
    assert leftovers and all(f"-{process.pid}@" in path.name for path in leftovers), leftovers
    for path in leftovers:                                   # as if the killed run were an hour ago
        os.utime(path, (time.time() - HOUR, time.time() - HOUR))
    write_wav(tmp_path / "short.wav", speech(0.5), 16_000)
    process = run_generate(tmp_path, out, tmp_path / "short.wav")
    stderr = process.communicate(timeout=300)[1]
    assert process.returncode == 0, stderr[-2000:]
    assert sorted(p.name for p in out.parent.iterdir()) == ["talk.mp4"]
    assert not list((tmp_path / "tmp").iterdir())


def test_stale_staging_is_removed_only_when_old_and_its_owner_is_gone(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        tag = owner_tag().split("@")[1]
        old = time.time() - HOUR
        made = {}
        for folder, prefix in ((tmp_path, ".memface-write-"), (tmp_path, ".speaker."), (tmp_path, ".speaker.old-"),
                               (tmp_path / "tmp", "memface-template-"), (tmp_path / "tmp", "memface-adapt-")):
            for owner, age in (("dead", old), ("alive", old), ("young", time.time())):
                pid = alive.pid if owner == "alive" else gone.pid
                path = folder / f"{prefix}{pid}@{tag}.x{owner}"
                path.mkdir()
                (path / "frames.npy").write_bytes(b"0" * 100)
                os.utime(path, (age, age))
                made[path] = owner
        other_host = tmp_path / f".memface-write-{gone.pid}@00000000.xother"
        other_host.mkdir()
        os.utime(other_host, (old, old))
        unrelated = tmp_path / ".speakers-notes"
        unrelated.mkdir()
        os.utime(unrelated, (old, old))

        # what the next runs do: write a video beside them, save a folder, decode a template, adapt
        from memface_hub.arrays_io import atomic_folder
        from memface_hub.io.video import VideoWriter

        VideoWriter(tmp_path / "next.mp4").abort()
        with atomic_folder(tmp_path / "speaker") as staging:
            (staging / "speaker.json").write_text("{}")
        with temporary_directory("memface-template-"), temporary_directory("memface-adapt-"):
            pass
        for path, owner in made.items():
            assert path.exists() == (owner != "dead"), (path.name, owner)
        assert other_host.exists() and unrelated.exists() and (tmp_path / "speaker" / "speaker.json").exists()
        removed = remove_stale(tmp_path, (".memface-write-",), min_age=0)      # any age: the living still stay
        assert [path.name.endswith("xyoung") for path in removed] == [True]
    finally:
        alive.kill()
        alive.wait()


def test_bad_output_paths_are_refused_before_any_work(tmp_path):
    from memface_hub.io.video import VideoWriter

    (tmp_path / "folder.mp4").mkdir()
    (tmp_path / "a_file").write_text("x")
    for path, problem in ((tmp_path / "folder.mp4", "is a folder"), (tmp_path / "a_file" / "t.mp4", "it is a file"),
                          (tmp_path / "missing" / "t.mp4", "does not exist")):
        with pytest.raises(MemFaceInputError, match=problem) as refused:
            VideoWriter(path)
        assert refused.value.source == str(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "folder.mp4"]
