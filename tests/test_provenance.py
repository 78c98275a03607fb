"""Provenance of generated videos: the invisible watermark survives H.264 at CRF 30 and halving the size and
is not found in unmarked video; C2PA credentials signed with a test key (made here) declare the video
AI-generated, are reported valid, trusted under the test CA, invalid once the file is changed; every
video the pipeline writes carries both (the watermark even without a key); ``memface verify``'s exit codes."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import tone, write_video
from memface_hub.cli import main
from memface_hub.errors import MemFaceInputError
from memface_hub.io.video import ffmpeg_exe, probe
from memface_hub.provenance import (
    SigningKey,
    Watermarker,
    add_content_credentials,
    detect_watermark,
    detect_watermark_in_video,
    read_content_credentials,
    verify_video,
)
from memface_hub.provenance.credentials import TRAINED_ALGORITHMIC_MEDIA, create_test_signing_key
from memface_hub.provenance.watermark import MIN_AGREEING_BITS


def textured_frames(count: int = 40, height: int = 144, width: int = 176, seed: int = 0) -> list[np.ndarray]:
    """A smooth random picture with a small bright square moving over it: (H, W, 3) uint8 frames."""
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.uniform(40, 215, (height, width, 3)).astype(np.float32), (0, 0), 4)
    base = cv2.normalize(base, None, 30, 225, cv2.NORM_MINMAX)
    frames = []
    for index in range(count):
        frame = base.copy()
        x = 10 + 3 * index % (width - 30)
        frame[40:60, x:x + 20] = (230, 190, 160)
        frames.append(np.clip(frame + rng.normal(0, 2, frame.shape), 0, 255).astype(np.uint8))
    return frames


def portrait_frames(count: int = 40) -> list[np.ndarray]:
    """The bundled demo speaker's template (a public-domain photo animated by the demo corpus; 354 × 354):
    synthetic, but with a real picture's textures, which is what H.264 at CRF 30 is tuned for."""
    from memface_hub.io.video import iter_frames
    from memface_hub.pipeline import DEMO_SPEAKER

    return list(iter_frames(DEMO_SPEAKER / "template.mp4", max_frames=count))


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", *args], check=True, timeout=120)


def reencoded(video: Path, out: Path, crf: int = 30, half: bool = False, filters: str | None = None) -> Path:
    """``video`` through libx264 at ``crf`` (scaled to half size, other ffmpeg ``filters``): a re-upload."""
    chain = ["scale=trunc(iw/4)*2:trunc(ih/4)*2"] if half else []
    chain += [filters] if filters else []
    ffmpeg("-i", str(video), *(["-vf", ",".join(chain)] if chain else []), "-c:v", "libx264", "-crf", str(crf),
           "-an", str(out))
    return out


# -- the watermark ------------------------------------------------------------------------------
def test_the_watermark_is_invisible_and_read_back_from_frames():
    frames = textured_frames(8)
    marked = [Watermarker()(frame) for frame in frames]
    change = np.abs(np.stack(marked).astype(int) - np.stack(frames)).astype(float)
    psnr = 10 * np.log10(255 ** 2 / (change ** 2).mean())
    assert psnr > 42 and np.percentile(change, 99) <= 6 and change.max() <= 12, (psnr, change.max())
    found = detect_watermark(marked)
    assert found.detected and found.agreeing_bits == 64 and found.frames_detected == 1.0
    assert found.message == {"magic_ok": True, "version": 1, "ai_generated": True}
    assert not detect_watermark(frames).detected


def test_the_watermark_survives_crf_30_half_size_and_grading_and_is_absent_from_unmarked_video(tmp_path):
    frames = portrait_frames()
    marked = write_video(tmp_path / "marked.mp4", [Watermarker()(frame) for frame in frames])
    plain = write_video(tmp_path / "plain.mp4", frames)
    for video in (marked, reencoded(marked, tmp_path / "crf30.mp4"),
                  reencoded(marked, tmp_path / "half.mp4", crf=23, half=True),
                  reencoded(marked, tmp_path / "graded.mp4", crf=23, filters="eq=brightness=0.06:contrast=1.15"),
                  reencoded(marked, tmp_path / "full_range.mp4", crf=23, filters="scale=in_range=tv:out_range=pc")):
        found = detect_watermark_in_video(video)
        assert found.detected and found.agreeing_bits >= MIN_AGREEING_BITS + 4, (video.name, found)
        assert found.confidence > 1 - 1e-9 and found.message["ai_generated"]
    assert probe(tmp_path / "half.mp4").width == 176                      # really half size
    for video in (plain, reencoded(plain, tmp_path / "plain30.mp4")):
        found = detect_watermark_in_video(video)
        assert not found.detected and found.agreeing_bits < MIN_AGREEING_BITS, (video.name, found)


def test_a_video_without_frames_or_a_missing_file_is_a_one_line_error(tmp_path):
    audio_only = tmp_path / "speech.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=300:duration=1", str(audio_only))
    for path, message in ((tmp_path / "missing.mp4", "file not found"), (audio_only, "no video stream")):
        with pytest.raises(MemFaceInputError, match=message):
            verify_video(path)


# -- C2PA content credentials -------------------------------------------------------------------
@pytest.fixture(scope="module")
def test_key(tmp_path_factory):
    pytest.importorskip("c2pa")
    return create_test_signing_key(tmp_path_factory.mktemp("c2pa_key"))


def test_signed_credentials_declare_ai_generation_and_break_when_the_file_changes(test_key, tmp_path):
    chain, key, ca = test_key
    video = write_video(tmp_path / "clip.mp4", textured_frames(10), audio=tone(0.4))
    assert read_content_credentials(video).state == "absent"
    add_content_credentials(video, SigningKey.from_files(chain, key))
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]          # signed in place, no leftovers
    report = read_content_credentials(video)
    assert report.present and report.state == "Valid" and report.ai_generated and not report.failures
    assert report.actions == [{"action": "c2pa.created", "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA}]
    assert {"c2pa.actions.v2", "cawg.training-mining"} <= set(report.assertions)
    assert report.signer["common_name"] == "memface test signer"
    assert report.claim_generator[0]["name"] == "memface_hub"
    assert read_content_credentials(video, trust_anchors=ca).state == "Trusted"
    assert probe(video).has_audio and probe(video).duration > 0.3        # still a playable mp4

    data = bytearray(video.read_bytes())
    data[data.index(b"mdat") + 64] ^= 0xFF                                 # one byte of the picture changed
    tampered = tmp_path / "tampered.mp4"
    tampered.write_bytes(bytes(data))
    report = read_content_credentials(tampered)
    assert report.present and report.state == "Invalid" and any("mismatch" in code for code in report.failures)


def test_signing_key_configuration(test_key, monkeypatch, tmp_path):
    chain, key, _ = test_key
    monkeypatch.delenv("MEMFACE_C2PA_CERT", raising=False)
    monkeypatch.delenv("MEMFACE_C2PA_KEY", raising=False)
    assert SigningKey.from_env() is None
    monkeypatch.setenv("MEMFACE_C2PA_CERT", str(chain))
    with pytest.raises(MemFaceInputError, match="MEMFACE_C2PA_KEY: is not set"):
        SigningKey.from_env()
    monkeypatch.setenv("MEMFACE_C2PA_KEY", key.read_text())                # the PEM text itself (a Space secret)
    assert SigningKey.from_env().algorithm == "es256"
    assert "BEGIN" not in repr(SigningKey.from_env())                      # never printed
    with pytest.raises(MemFaceInputError, match="no such file"):
        SigningKey.from_files(tmp_path / "nope.pem", key)
    with pytest.raises(MemFaceInputError, match="not PEM"):
        SigningKey.from_files(chain, b"hello")


# -- every generated video ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo():
    from memface_hub.pipeline import MemFacePipeline, load_speaker

    pipe = MemFacePipeline.from_pretrained()
    pipe.set_progress_bar_config(disable=True)
    return pipe, load_speaker("demo")


def test_generated_videos_carry_the_watermark_and_signed_credentials(demo, test_key, tmp_path, monkeypatch, caplog):
    pipe, speaker = demo
    chain, key, _ = test_key
    monkeypatch.setenv("MEMFACE_C2PA_CERT", str(chain))
    monkeypatch.setenv("MEMFACE_C2PA_KEY", str(key))
    caplog.set_level(logging.INFO)
    result = pipe.generate_to_file((tone(1.6), 16_000), speaker, tmp_path / "talk.mp4")
    assert result.watermarked and result.content_credentials
    report = verify_video(result.path)
    assert report.generated and report.watermark.detected and report.credentials.valid
    assert report.credentials.ai_generated
    assert "signed C2PA content credentials added" in caplog.text
    # a re-upload re-encodes: the credentials are gone, the watermark is not
    again = verify_video(reencoded(result.path, tmp_path / "reuploaded.mp4", crf=30))
    assert again.watermark.detected and not again.credentials.present and again.generated


def test_without_a_key_or_without_c2pa_the_video_is_watermarked_and_the_log_says_so(demo, monkeypatch, tmp_path,
                                                                                     caplog):
    pipe, speaker = demo
    monkeypatch.delenv("MEMFACE_C2PA_CERT", raising=False)
    monkeypatch.delenv("MEMFACE_C2PA_KEY", raising=False)
    result = pipe.generate_to_file((tone(1.2), 16_000), speaker, tmp_path / "unsigned.mp4")
    assert result.watermarked and not result.content_credentials
    assert "C2PA content credentials were NOT added: no signing key is configured" in caplog.text
    assert detect_watermark_in_video(result.path).detected

    caplog.clear()
    monkeypatch.setitem(sys.modules, "c2pa", None)                         # c2pa-python not installed
    key = SigningKey(b"-----BEGIN CERTIFICATE-----", b"-----BEGIN PRIVATE KEY-----")
    result = pipe.generate_to_file((tone(1.2), 16_000), speaker, tmp_path / "no_c2pa.mp4", signing_key=key)
    assert not result.content_credentials and "c2pa-python is not installed" in caplog.text
    assert verify_video(result.path).credentials.state == "unavailable"


# -- memface verify -----------------------------------------------------------------------------
def test_memface_verify_reports_both_with_documented_exit_codes(test_key, tmp_path, capsys):
    chain, key, ca = test_key
    frames = portrait_frames(30)
    marked = write_video(tmp_path / "marked.mp4", [Watermarker()(frame) for frame in frames])
    add_content_credentials(marked, SigningKey.from_files(chain, key))
    plain = write_video(tmp_path / "plain.mp4", frames)
    tampered = tmp_path / "tampered.mp4"
    data = bytearray(marked.read_bytes())
    data[data.index(b"mdat") + 64] ^= 0xFF
    tampered.write_bytes(bytes(data))

    assert main(["verify", str(marked), "--trust-anchors", str(ca)]) == 0
    out = capsys.readouterr().out
    assert "watermark: found (64/64 bits agree" in out
    assert "C2PA: manifest Trusted; AI-generated: yes; actions: c2pa.created trainedAlgorithmicMedia" in out
    assert main(["verify", str(plain)]) == 1
    out = capsys.readouterr().out
    assert "watermark: not found" in out and "C2PA: no manifest" in out
    assert main(["verify", str(tampered)]) == 3
    assert "manifest Invalid" in capsys.readouterr().out
    assert main(["verify", str(plain), "--json"]) == 1
    assert '"detected": false' in capsys.readouterr().out
    for bad in (tmp_path / "missing.mp4", tmp_path / "notes.txt"):
        if bad.suffix == ".txt":
            bad.write_text("not a video")
        assert main(["verify", str(bad)]) == 2
        error = capsys.readouterr().err
        assert error.startswith("memface verify: error:") and len(error.strip().splitlines()) == 1
    with pytest.raises(SystemExit):
        main(["verify", "--help"])
    assert "3  C2PA credentials present but invalid" in capsys.readouterr().out
