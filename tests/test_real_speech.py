"""Lip-sync on real speech: GRID sentences from clip ids, silent shards skipped in a2e training data,
and the schema of ``scripts/real_speech_eval.py``'s JSON — all on tiny synthetic shards made here."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from memface_hub.arrays_io import save_arrays
from memface_hub.errors import MemFaceInputError
from memface_hub.evaluation.grid import grid_sentence, is_grid_clip
from memface_hub.evaluation.real_people import adaptation_cut
from memface_hub.face.landmarks import MOUTH_VERTICES, NUM_BLENDSHAPES, NUM_LANDMARKS
from memface_hub.io.audio import AUDIO_SAMPLE_RATE, write_wav
from memface_hub.io.shards import AUDIO_FILE, META_FILE, SHARD_FORMAT, SHARD_VERSION, TRACK_FILE

REPO_ROOT = Path(__file__).resolve().parent.parent
FPS = 25


def make_shard(root: Path, clip_id: str, num_frames: int = 50, audio: np.ndarray | None = None, seed: int = 0) -> Path:
    """A minimal valid shard: random mouth vertices, landmarks whose inner lips open and close,
    and ``audio`` (none: no audio.wav, a silent clip)."""
    rng = np.random.default_rng(seed)
    gap = 0.5 + 0.5 * np.sin(np.arange(num_frames) / 3.0)                       # (T,)
    landmarks = rng.normal(size=(num_frames, NUM_LANDMARKS, 3)).astype(np.float32)
    landmarks[:, 10, :2], landmarks[:, 152, :2] = (50.0, 0.0), (50.0, 100.0)    # face height 100 px
    landmarks[:, 13, :2] = np.stack([np.full(num_frames, 50.0), 60.0 - 5 * gap], 1)
    landmarks[:, 14, :2] = np.stack([np.full(num_frames, 50.0), 60.0 + 5 * gap], 1)
    neutral = rng.normal(scale=0.1, size=(len(MOUTH_VERTICES), 3)).astype(np.float32)
    mouth = neutral + rng.normal(scale=0.01, size=(num_frames, len(MOUTH_VERTICES), 3)).astype(np.float32)
    poses = np.zeros((num_frames, 13), np.float32)
    poses[:, 0], poses[:, 1:10] = 1.0, np.eye(3).reshape(9)
    arrays = {
        "landmarks": landmarks, "blendshapes": np.zeros((num_frames, NUM_BLENDSHAPES), np.float32),
        "transforms": np.tile(np.eye(4, dtype=np.float32), (num_frames, 1, 1)),
        "detected": np.ones(num_frames, np.uint8), "valid": np.ones(num_frames, np.uint8), "poses": poses,
        "crop_affines": np.tile(np.eye(2, 3, dtype=np.float32), (num_frames, 1, 1)), "mouth_vertices": mouth,
        "canonical_face": rng.normal(size=(NUM_LANDMARKS, 3)).astype(np.float32), "neutral_mouth": neutral,
    }
    folder = root / clip_id
    folder.mkdir(parents=True)
    save_arrays(folder / TRACK_FILE, arrays)
    if audio is not None:
        write_wav(folder / AUDIO_FILE, audio, AUDIO_SAMPLE_RATE)
    (folder / META_FILE).write_text(json.dumps({"format": SHARD_FORMAT, "format_version": SHARD_VERSION,
                                                "clip_id": clip_id, "fps": FPS, "num_frames": num_frames}))
    return folder


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise bursts with a syllable-rate envelope (loudness that rises and falls)."""
    rng = np.random.default_rng(seed)
    time = np.arange(int(seconds * AUDIO_SAMPLE_RATE)) / AUDIO_SAMPLE_RATE
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * time)
    return (0.2 * envelope * rng.normal(size=time.size)).clip(-1, 1).astype(np.float32)


# -- GRID sentences -------------------------------------------------------------------------------------
@pytest.mark.parametrize("clip_id, sentence", [
    ("grid_bbaf2n", "bin blue at f two now"),
    ("grid_lwbsza", "lay white by s zero again"),
    ("pwij3p", "place white in j three please"),
    ("grid_srwz9s", "set red with z nine soon"),
])
def test_grid_sentence_from_clip_id(clip_id, sentence):
    assert " ".join(grid_sentence(clip_id)) == sentence


@pytest.mark.parametrize("clip_id, problem", [
    ("grid_bbaf2", "6 characters"),            # too short
    ("grid_xbaf2n", "not a GRID command"),
    ("grid_bbawzn", "not a GRID letter"),       # GRID has no letter w
    ("grid_bbaf2x", "not a GRID adverb"),
])
def test_grid_sentence_refuses_bad_ids_in_one_line(clip_id, problem):
    with pytest.raises(MemFaceInputError, match=problem) as caught:
        grid_sentence(clip_id)
    assert "\n" not in str(caught.value) and clip_id in str(caught.value)


def test_is_grid_clip():
    assert is_grid_clip("grid_lbax4n") and not is_grid_clip("hdtf_WDA_KatieHill_000")


# -- silent shards in a2e training data ----------------------------------------------------------------
@pytest.fixture
def mixed_shards(tmp_path):
    root = tmp_path / "shards"
    make_shard(root, "speech", audio=speech_like(2.0))
    make_shard(root, "no_audio", audio=None, seed=1)
    make_shard(root, "muted", audio=np.zeros(2 * AUDIO_SAMPLE_RATE, np.float32), seed=2)
    return root


def test_silent_shards_are_skipped_with_a_log_line(mixed_shards, caplog):
    from memface_hub.audio import build_frontend
    from memface_hub.data.a2e_clips import load_a2e_clips
    from memface_hub.io.shards import fit_mouth_model

    mouth_model = fit_mouth_model(mixed_shards, 4)
    with caplog.at_level(logging.INFO, logger="memface_hub.data.a2e_clips"):
        clips = load_a2e_clips(mixed_shards, ["no_audio", "speech", "muted"], build_frontend("mel"), mouth_model)
    assert [clip.clip_id for clip in clips] == ["speech"]
    assert clips[0].features.shape[0] == 50
    logged = caplog.text
    assert "skipping no_audio" in logged and "skipping muted" in logged and "skipped 2 silent shard(s) of 3" in logged

    with pytest.raises(MemFaceInputError, match="no audio"):
        load_a2e_clips(mixed_shards, ["no_audio"], build_frontend("mel"), mouth_model, skip_silent=False)
    with pytest.raises(MemFaceInputError, match="none of the 2 shards has sound"):
        load_a2e_clips(mixed_shards, ["no_audio", "muted"], build_frontend("mel"), mouth_model)


# -- the evaluation script -------------------------------------------------------------------------------
def load_script():
    spec = importlib.util.spec_from_file_location("real_speech_eval", REPO_ROOT / "scripts/real_speech_eval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tiny_real_corpus(tmp_path):
    """A corpus folder with two test people (one GRID clip, one other) and a silent one; a people file; a
    tiny untrained mel a2e model."""
    from memface_hub.a2e import MemFaceAudioToExpression
    from memface_hub.audio import build_frontend

    corpus = tmp_path / "corpus"
    make_shard(corpus / "shards", "grid_bbaf2n", num_frames=75, audio=speech_like(3.0))
    make_shard(corpus / "shards", "talk_a", num_frames=60, audio=speech_like(2.4, seed=1), seed=1)
    make_shard(corpus / "shards", "mute_b", num_frames=60, audio=None, seed=2)
    people = {"format": "memface-real-people-split", "format_version": 1, "people": {
        "grid_person": {"split": "test", "clips": ["grid_bbaf2n"]},
        "person_a": {"split": "test", "clips": ["talk_a"]},
        "person_b": {"split": "test", "clips": ["mute_b"]},
        "trained": {"split": "train", "clips": ["elsewhere"]},
    }}
    people_file = tmp_path / "people.json"
    people_file.write_text(json.dumps(people))
    frontend = build_frontend("mel")
    model = MemFaceAudioToExpression(feature_dim=frontend.feature_dim, d_model=16, num_heads=2, num_encoder_layers=1,
                                     num_decoder_layers=1, ff_dim=32, memory_slots=8, memory_dim=8,
                                     frontend=frontend.config(), context_frames=16)
    model.set_mouth_model(np.random.default_rng(0).normal(scale=0.01, size=(16, len(MOUTH_VERTICES) * 3)))
    model.save_pretrained(tmp_path / "a2e")
    return corpus, people_file, tmp_path / "a2e"


def test_real_speech_eval_json_schema(tiny_real_corpus, tmp_path):
    corpus, people_file, a2e = tiny_real_corpus
    script = load_script()
    out = tmp_path / "real_speech.json"
    assert script.main(["--corpus", str(corpus), "--a2e", str(a2e), "--people", str(people_file),
                        "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert {"git_commit", "memface_version", "command", "config", "clips", "summary", "grid_closure"} <= set(result)
    assert [row["clip"] for row in result["clips"]] == ["grid_bbaf2n", "talk_a"]   # the silent clip is skipped
    for row in result["clips"]:
        assert set(row) == {"clip", "lip_corr_0", "lip_corr_best", "lag", "loudness_corr_0"}
        assert -5 <= row["lag"] <= 5
    assert set(result["summary"]) == {"clips", "lip_corr_0", "loudness_corr_0", "lag_within_1_fraction", "frontend"}
    assert result["summary"]["clips"] == 2 and result["summary"]["frontend"] == "mel"
    assert result["config"]["test_part"] is True
    assert "measured" in result["grid_closure"]


def test_the_protocol_cut_is_shared_by_the_real_people_scripts():
    assert adaptation_cut(75, 25.0) == 52              # 0.7 × 3 s (the real-people protocol's cut)
    assert adaptation_cut(1000, 25.0) == 375           # 15 s


def test_real_speech_eval_refuses_a_missing_corpus_in_one_line(tmp_path, caplog):
    script = load_script()
    with caplog.at_level(logging.ERROR):
        assert script.main(["--corpus", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.json")]) == 2
    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1 and "not a corpus folder" in errors[0] and "\n" not in errors[0]
    assert not (tmp_path / "x.json").exists()


# -- the cross-validated evaluation script -------------------------------------------------------------------
def load_cv_script(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO_ROOT / "scripts"))        # it imports real_speech_eval beside it
    spec = importlib.util.spec_from_file_location("real_speech_cv", REPO_ROOT / "scripts/real_speech_cv.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_people_are_dealt_into_balanced_folds_whole(monkeypatch):
    script = load_cv_script(monkeypatch)
    people = {"ann": ["a1", "a2", "a3"], "bob": ["b1"], "cat": ["c1"], "dan": ["d1"], "eve": ["e1", "e2"]}
    folds = script.deal_folds(people, 2, seed=0)
    assert sorted(p for fold in folds for p in fold) == sorted(people)           # each person in one fold
    assert sorted(sum(len(people[p]) for p in fold) for fold in folds) == [4, 4]
    assert script.deal_folds(people, 2, seed=0) == folds                          # deterministic
    with pytest.raises(ValueError, match="2 people with speech cannot fill 3 folds"):
        script.deal_folds({"ann": ["a1"], "bob": ["b1"]}, 3, seed=0)


def test_real_speech_cv_holds_each_person_out_once_and_resumes(tiny_shards, monkeypatch, tmp_path):
    """Two folds of two real people with speech (and a silent one, never scored) beside the tiny synthetic
    corpus: each fold trains without its people's clips and scores only them, the baseline trains on no real
    clip and scores everyone, the results page gets the table, and a rerun trains nothing."""
    import shutil

    script = load_cv_script(monkeypatch)
    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_shards, corpus / "shards")
    synthetic = sorted(path.name for path in (corpus / "shards").iterdir())
    real = {"talk_a": "person_a", "talk_b": "person_b", "mute_c": "person_c"}
    make_shard(corpus / "shards", "talk_a", num_frames=60, audio=speech_like(2.4, seed=1), seed=1)
    make_shard(corpus / "shards", "talk_b", num_frames=60, audio=speech_like(2.4, seed=2), seed=2)
    make_shard(corpus / "shards", "mute_c", num_frames=60, audio=None, seed=3)
    clips = {clip: {"source": "synthetic", "person": "synthetic"} for clip in synthetic}
    clips.update({clip: {"source": "real", "person": person} for clip, person in real.items()})
    (corpus / "corpus.json").write_text(json.dumps({"clips": clips, "a2e_splits": {
        "train": synthetic[:2] + ["talk_a", "mute_c"], "val": synthetic[2:], "test_real": ["talk_b"]}}))
    out, work, readme = tmp_path / "cv.json", tmp_path / "work", tmp_path / "README.md"
    readme.write_text("# Results\n\n<!-- real-speech-cv:start -->\nSTALE TABLE\n<!-- real-speech-cv:end -->\n\nkept\n")
    argv = ["--corpus", str(corpus), "--work", str(work), "--folds", "2", "--epochs", "1", "--real-augment", "1",
            "--out", str(out), "--readme", str(readme), "--figure", str(tmp_path / "cv.png")]
    assert script.main(argv) == 0
    assert (tmp_path / "cv.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not (tmp_path / "cv.tmp.png").exists()
    result = json.loads(out.read_text())
    held_out = {fold["fold"]: fold["clips"] for fold in result["folds"]}
    assert sorted(held_out.values()) == [["talk_a"], ["talk_b"]]                  # the silent clip is never scored
    for fold, (clip,) in held_out.items():
        splits = json.loads((work / f"fold_{fold}.json").read_text())["a2e_splits"]
        other = "talk_b" if clip == "talk_a" else "talk_a"
        assert clip not in splits["train"] and other in splits["train"] and splits["test_real"] == [clip]
        assert splits["val"] == synthetic[2:]
    assert [(row["clip"], row["fold"]) for row in result["clips"]] == [(held_out[0][0], 0), (held_out[1][0], 1)]
    assert set(result["clips"][0]) == {"clip", "lip_corr_0", "lip_corr_best", "lag", "loudness_corr_0", "person",
                                       "fold"}
    assert result["summary"]["clips"] == 2 and result["summary"]["people"] == 2
    assert {"git_commit", "command", "config"} <= set(result)
    # the baseline: one model without any real clip, scoring every fold's clips
    assert json.loads((work / "synthetic_only.json").read_text())["a2e_splits"]["train"] == synthetic[:2]
    assert result["without_real"]["a2e"] == str(work / "synthetic_only" / "best")
    assert sorted(row["clip"] for row in result["without_real"]["clips"]) == ["talk_a", "talk_b"]
    page = readme.read_text()
    assert "STALE TABLE" not in page and page.endswith("kept\n") and "| synthetic clips only |" in page
    runs = ("fold_0", "fold_1", "synthetic_only")
    trained = {run: (work / run / "trainer_state.json").stat().st_mtime_ns for run in runs}
    assert script.main(argv) == 0                                                  # finished runs are not retrained
    assert {run: (work / run / "trainer_state.json").stat().st_mtime_ns for run in runs} == trained


def test_real_speech_cv_refuses_a_corpus_without_a2e_splits(monkeypatch, tmp_path, caplog):
    script = load_cv_script(monkeypatch)
    (tmp_path / "corpus" / "shards").mkdir(parents=True)
    (tmp_path / "corpus" / "corpus.json").write_text(json.dumps({"clips": {}, "splits": {}}))
    with caplog.at_level(logging.ERROR):
        assert script.main(["--corpus", str(tmp_path / "corpus"), "--work", str(tmp_path / "w"),
                            "--out", str(tmp_path / "cv.json")]) == 2
    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1 and "not a multi-person corpus" in errors[0]
    assert not (tmp_path / "cv.json").exists()
