"""Video/audio I/O through the real ffmpeg binary."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from conftest import tone, write_video
from memface_hub.errors import MemFaceInputError
from memface_hub.io import VideoWriter, iter_frames, load_audio, probe, read_frames
from memface_hub.io.video import ffmpeg_exe


def test_resample_29_97_to_25_fps_keeps_duration(carphone_path):
    info = probe(carphone_path)
    assert info.has_video and not info.has_audio and abs(info.fps - 29.97) < 0.01
    frames = read_frames(carphone_path, fps=25)
    assert frames.shape == (100, 144, 176, 3)  # 4 s at 25 fps
    assert read_frames(carphone_path, fps=25, scale=2.0).shape[1:3] == (288, 352)


def test_resampling_picks_frames_by_timestamp(tmp_path):
    # 50 fps source whose frame k has brightness 4k: at 25 fps we must see every other frame.
    frames = [np.full((32, 32, 3), 4 * k, np.uint8) for k in range(50)]
    path = write_video(tmp_path / "ramp.mp4", frames, fps=50)
    out = read_frames(path, fps=25)
    assert len(out) == 25
    brightness = out.reshape(len(out), -1).mean(1)
    np.testing.assert_allclose(brightness, 8 * np.arange(25), atol=3)


def test_writer_muxes_audio_and_labels_metadata(tmp_path):
    frames = [np.full((64, 48, 3), 10 * k, np.uint8) for k in range(25)]
    path = tmp_path / "out.mp4"
    with VideoWriter(path, fps=25, audio=(tone(1.0), 16_000), metadata={"comment": "synthetic"}) as writer:
        for frame in frames:
            writer.write(frame)
    info = probe(path)
    assert info.has_audio and (info.width, info.height) == (48, 64)
    assert len(read_frames(path)) == 25
    audio = load_audio(path)
    assert abs(len(audio) - 16_000) < 1_600 and audio.std() > 0.1
    tags = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    assert "synthetic" in tags


def test_writer_is_atomic_on_error(tmp_path):
    path = tmp_path / "keep.mp4"
    path.write_bytes(b"previous result")
    with pytest.raises(RuntimeError):
        with VideoWriter(path, fps=25) as writer:
            writer.write(np.zeros((32, 32, 3), np.uint8))
            raise RuntimeError("boom")
    assert path.read_bytes() == b"previous result"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.mp4"]  # no temp leftovers


def test_writer_rejects_bad_frames_and_folders(tmp_path):
    with pytest.raises(MemFaceInputError, match="does not exist"):
        VideoWriter(tmp_path / "missing" / "x.mp4")
    writer = VideoWriter(tmp_path / "x.mp4")
    with pytest.raises(ValueError, match="even"):
        writer.write(np.zeros((33, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        writer.write(np.zeros((32, 32, 3), np.float32))
    writer.abort()
    assert not (tmp_path / "x.mp4").exists()


def test_bad_inputs_give_one_line_errors(tmp_path, carphone_path):
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    empty = tmp_path / "empty.wav"
    empty.touch()
    audio_only = tmp_path / "voice.wav"
    import soundfile

    soundfile.write(audio_only, tone(0.5), 16_000)
    cases = [
        (lambda: probe(tmp_path / "missing.mp4"), "missing.mp4: file not found"),
        (lambda: probe(text), "not a readable audio/video file"),
        (lambda: load_audio(empty), "empty file"),
        (lambda: load_audio(carphone_path), "no audio stream"),
        (lambda: list(iter_frames(audio_only)), "no video stream"),
        (lambda: load_audio(audio_only, max_seconds=0.1), "limit is 0.1 s"),
    ]
    for call, expected in cases:
        with pytest.raises(MemFaceInputError) as info:
            call()
        message = str(info.value)
        assert expected in message and "\n" not in message


def test_load_audio_resamples_to_16k(tmp_path):
    import soundfile

    path = tmp_path / "tone44k.wav"
    seconds = 0.5
    time = np.arange(int(44_100 * seconds)) / 44_100
    soundfile.write(path, 0.5 * np.sin(2 * np.pi * 440 * time), 44_100)
    audio = load_audio(path)
    assert abs(len(audio) - 8_000) <= 2
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * 16_000 / len(audio) - 440) < 5
