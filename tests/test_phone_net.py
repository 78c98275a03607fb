"""The learned phone-posterior front end: labels from TTS timings, augmentation, training, loading, pinning."""

from __future__ import annotations

import json

import numpy as np
import pytest

from memface_hub.audio import build_frontend, check_artifact_frontend
from memface_hub.audio.augment import augment_audio
from memface_hub.audio.phone_net import CLASS_INDEX, PHONE_CLASSES, PhoneNetFrontEnd, phone_class
from memface_hub.errors import MemFaceInputError
from memface_hub.training.train_phone_net import (
    PhoneNetTrainingConfig,
    frame_accuracy,
    frame_labels,
    prepare,
    train_phone_net,
)


def test_frame_labels_follow_the_timeline_and_its_stretch():
    phonemes = [["m", 0.10, 0.20], ["'a", 0.20, 0.35], ["_:", 0.35, 0.5]]
    labels = frame_labels(phonemes, 50)
    assert labels[12] == CLASS_INDEX["m"] and labels[25] == CLASS_INDEX["a"]
    assert labels[5] == labels[40] == CLASS_INDEX["sil"]            # before speech, and a pause symbol
    stretched = frame_labels(phonemes, 50, factor=1.5)                # audio slowed: phones 1.5x later
    assert stretched[12] == CLASS_INDEX["sil"] and stretched[18] == CLASS_INDEX["m"]
    assert phone_class("n#") == CLASS_INDEX["n"] and phone_class("??") == CLASS_INDEX["sil"]


def test_augmentation_stretches_and_changes_the_sound():
    rng = np.random.default_rng(0)
    audio = np.sin(2 * np.pi * 220 * np.arange(16000) / 16000).astype(np.float32)
    for _ in range(5):
        copy, factor = augment_audio(audio, rng)
        assert 0.88 <= factor <= 1.12 and abs(len(copy) - factor * len(audio)) <= 1
        assert np.abs(copy).max() <= 0.95 + 1e-6                # below full scale, whatever noise was added
        assert np.isfinite(copy).all() and copy.dtype == np.float32
        assert np.abs(copy[:14000] - audio[:14000]).mean() > 0.01


@pytest.fixture(scope="module")
def tiny_phone_net(tiny_corpus, tmp_path_factory):
    root, _ = tiny_corpus
    out = tmp_path_factory.mktemp("phone_net")
    config = PhoneNetTrainingConfig(corpus=str(root), output_dir=str(out), epochs=3, steps_per_epoch=15,
                                    batch_size=8, channels=32, blocks=2, augment_copies=1, progress=False)
    return train_phone_net(config), config


def test_a_trained_phone_net_learns_tts_phones_and_resumes(tiny_phone_net, tiny_corpus):
    best, config = tiny_phone_net
    root, index = tiny_corpus
    state = json.loads((best.parent / "trainer_state.json").read_text())
    assert state["epoch"] == 3 and len(state["history"]) == 3
    train = [(root / c["video"], root / c["timeline"]) for c in index["clips"] if c["split"] == "train"]
    items = prepare(train, 0, 0, False, "")
    labels = np.concatenate([label for _, label in items])
    majority = np.bincount(labels).max() / len(labels)                 # always guessing the commonest class
    from memface_hub.audio.phone_net import load_phone_net

    assert frame_accuracy(load_phone_net(best), items) > majority + 0.05
    # resuming a finished run trains nothing more and keeps the same best weights
    before = (best / "model.safetensors").read_bytes()
    train_phone_net(config)
    assert (best / "model.safetensors").read_bytes() == before


def test_phone_net_front_end_features_config_and_pinning(tiny_phone_net):
    best, _ = tiny_phone_net
    frontend = PhoneNetFrontEnd(model_path=str(best))
    audio = (0.1 * np.random.default_rng(1).standard_normal(16000)).astype(np.float32)
    features = frontend(audio, 16000)
    assert features.shape == (25, 4 * len(PHONE_CLASSES)) == (25, frontend.feature_dim)
    np.testing.assert_allclose(features.reshape(25, 4, -1).sum(-1), 1.0, atol=1e-4)   # posteriors
    again = build_frontend(frontend.config())
    np.testing.assert_array_equal(again(audio, 16000), features)
    with pytest.raises(MemFaceInputError, match="sha256"):
        PhoneNetFrontEnd(model_path=str(best), weights_sha256="0" * 64)
    # an artifact names the bundled weights by hash only, never a folder
    check_artifact_frontend({"name": "phone_net", "weights_sha256": "a" * 64, "resample": False}, "config.json")
    with pytest.raises(MemFaceInputError, match="model_path"):
        check_artifact_frontend({"name": "phone_net", "weights_sha256": "a" * 64, "model_path": str(best)}, "c.json")
    with pytest.raises(MemFaceInputError, match="sha256"):
        check_artifact_frontend({"name": "phone_net", "weights_sha256": "../x"}, "config.json")


def test_malformed_phone_net_folders_are_refused(tiny_phone_net, tmp_path):
    best, _ = tiny_phone_net
    with pytest.raises(MemFaceInputError, match="no phone_net weights"):
        PhoneNetFrontEnd(model_path=str(tmp_path))
    (tmp_path / "model.safetensors").write_bytes((best / "model.safetensors").read_bytes())
    (tmp_path / "config.json").write_text(json.dumps({"channels": 32, "blocks": 2, "kernel": 5, "classes": ["a"]}))
    with pytest.raises(MemFaceInputError, match="phone classes"):
        PhoneNetFrontEnd(model_path=str(tmp_path))(np.zeros(16000, np.float32) + 0.01, 16000)
    config = json.loads((best / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "channels": 48}))
    with pytest.raises(MemFaceInputError, match="do not match"):
        PhoneNetFrontEnd(model_path=str(tmp_path))(np.zeros(16000, np.float32) + 0.01, 16000)
