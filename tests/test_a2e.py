"""Audio-to-expression: the model, its memories, strict loading, losses, schedule, metrics, training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import run_cli_under_accelerate
from memface_hub.a2e import MemFaceAudioToExpression
from memface_hub.errors import MemFaceInputError
from memface_hub.evaluation.a2e_metrics import best_lag, bilabial_counts, rmse, silence_jitter
from memface_hub.face.geometry import mouth_opening
from memface_hub.memory import ImplicitMemory, KeyValueMemoryRead, slot_diversity
from memface_hub.training.losses import a2e_loss, masked_mean
from memface_hub.training.schedules import AlternatingSchedule

TINY = dict(feature_dim=12, exp_dim=6, d_model=16, num_heads=2, num_encoder_layers=1, num_decoder_layers=1,
            ff_dim=32, memory_slots=20, memory_dim=8, frontend={"name": "mel", "n_mels": 3, "resample": False})


@pytest.mark.parametrize("memory", ["implicit", "none", "explicit"])
def test_forward_shapes_and_memory_attention(memory):
    torch.manual_seed(0)
    model = MemFaceAudioToExpression(memory=memory, **TINY)
    output = model(torch.randn(3, 10, 12))
    assert output.expressions.shape == (3, 10, 6)
    if memory == "none":
        assert output.memory_attention is None and model.memory_parameters() == []
    else:
        assert output.memory_attention.shape == (3, 10, 20)
        torch.testing.assert_close(output.memory_attention.sum(-1), torch.ones(3, 10))
    with pytest.raises(ValueError, match="features have dim 5"):
        model(torch.randn(1, 4, 5))


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="memory must be one of"):
        MemFaceAudioToExpression(memory="episodic")
    with pytest.raises(ValueError, match="divisible by num_heads"):
        MemFaceAudioToExpression(d_model=30, num_heads=4)


def test_implicit_memory_reset_hurts_a_trained_model():
    """Fig. 9's toy test: once trained, the model relies on what its memory learned, so resetting the slots
    to random values (nothing else changed) makes its error on the training data clearly worse."""
    torch.manual_seed(0)
    model = MemFaceAudioToExpression(memory="implicit", dropout=0.0, **TINY)
    generator = torch.Generator().manual_seed(0)
    features, targets = torch.randn(16, 8, 12, generator=generator), torch.randn(16, 8, 6, generator=generator)

    def error(m: MemFaceAudioToExpression) -> float:
        with torch.no_grad():
            return float(((m.eval()(features).expressions - targets) ** 2).mean())

    untrained = error(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(150):
        loss = ((model(features).expressions - targets) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    trained, trained_state = error(model), model.state_dict()
    assert trained < 0.01 * untrained
    for seed in range(3):
        reset = MemFaceAudioToExpression(memory="implicit", dropout=0.0, **TINY)
        reset.load_state_dict(trained_state)
        reset.reset_memory_(seed=seed)
        changed = {name for name, value in reset.state_dict().items() if not torch.equal(value, trained_state[name])}
        assert changed == {"implicit_memory.keys", "implicit_memory.values"}   # only the slots were reset
        assert error(reset) > 10 * trained, f"reset seed {seed}: {error(reset):.2e} vs trained {trained:.2e}"
    with pytest.raises(ValueError, match="needs memory='implicit'"):
        MemFaceAudioToExpression(memory="none", **TINY).reset_memory_()


def test_explicit_memory_is_filled_from_data():
    model = MemFaceAudioToExpression(memory="explicit", **TINY)
    keys, values = torch.randn(20, 12), torch.randn(20, 6)
    model.set_explicit_memory(keys, values)
    torch.testing.assert_close(model.explicit_keys, keys)
    with pytest.raises(ValueError, match="explicit memory must be"):
        model.set_explicit_memory(torch.randn(5, 12), torch.randn(5, 6))


def test_memory_read_excludes_and_top_k():
    reader = KeyValueMemoryRead(4, 4, 3, 8, 5, top_k=2)
    query, keys, values = torch.randn(1, 6, 4), torch.randn(7, 4), torch.randn(7, 3)
    output = reader(query, keys, values)
    assert ((output.attention > 0).sum(-1) <= 2).all()
    exclude = torch.zeros(1, 6, 7, dtype=torch.bool)
    exclude[..., 0] = True
    assert (reader(query, keys, values, exclude=exclude).attention[..., 0] == 0).all()


def test_slot_diversity_is_low_for_orthogonal_and_high_for_equal_slots():
    assert slot_diversity(torch.eye(6)).item() == pytest.approx(0.0)
    assert slot_diversity(torch.ones(6, 4)).item() == pytest.approx(1.0)
    memory = ImplicitMemory(8, num_slots=10, slot_dim=4)
    assert memory.regulariser().item() > 0


def test_vertices_use_the_shipped_mouth_basis(tmp_path):
    model = MemFaceAudioToExpression(memory="none", **TINY)
    basis = np.linalg.qr(np.random.default_rng(0).normal(size=(102 * 3, 6)))[0].T
    model.set_mouth_model(basis)
    neutral = torch.randn(102, 3)
    vertices = model.vertices(torch.zeros(2, 5, 6), neutral)
    assert vertices.shape == (2, 5, 102, 3)
    torch.testing.assert_close(vertices[1, 3], neutral)
    model.save_pretrained(tmp_path)
    loaded = MemFaceAudioToExpression.from_pretrained(tmp_path)
    torch.testing.assert_close(loaded.mouth_basis, model.mouth_basis)
    assert loaded.frontend == TINY["frontend"]


def test_save_load_round_trip_and_strict_refusals(tmp_path):
    torch.manual_seed(0)
    model = MemFaceAudioToExpression(memory="implicit", **TINY).eval()
    model.save_pretrained(tmp_path / "good")
    loaded = MemFaceAudioToExpression.from_pretrained(tmp_path / "good")
    features = torch.randn(1, 9, 12)
    torch.testing.assert_close(loaded(features).expressions, model(features).expressions)
    assert json.loads((tmp_path / "good" / "config.json").read_text())["memory"] == "implicit"

    tensors = load_file(tmp_path / "good" / "model.safetensors")
    for name, change in {"missing": lambda t: t.pop("head.bias"),
                         "extra": lambda t: t.__setitem__("stowaway", torch.zeros(1)),
                         "shape": lambda t: t.__setitem__("head.bias", torch.zeros(7))}.items():
        broken = dict(tensors)
        change(broken)
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text((tmp_path / "good" / "config.json").read_text())
        save_file(broken, folder / "model.safetensors")
        with pytest.raises(MemFaceInputError) as info:
            MemFaceAudioToExpression.from_pretrained(folder)
        assert {"missing": "head.bias", "extra": "stowaway", "shape": "head.bias"}[name] in str(info.value)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((tmp_path / "good" / "config.json").read_text())
    torch.save(tensors, pickled / "pytorch_model.bin")
    with pytest.raises(MemFaceInputError, match="only safetensors"):
        MemFaceAudioToExpression.from_pretrained(pickled)


def test_predict_long_input_matches_window_when_short():
    torch.manual_seed(0)
    model = MemFaceAudioToExpression(memory="none", dropout=0.0, **TINY).eval()
    features = torch.randn(50, 12)
    torch.testing.assert_close(model.predict(features, window=64), model(features[None]).expressions[0])
    long = model.predict(torch.randn(500, 12), window=64, overlap=16)
    assert long.shape == (500, 6) and torch.isfinite(long).all()
    # by default the windows are the training context (context_frames), cross-faded over a quarter
    short_context = MemFaceAudioToExpression(memory="none", dropout=0.0, context_frames=16, **TINY).eval()
    short_context.load_state_dict(model.state_dict())
    torch.testing.assert_close(short_context.predict(long_input := torch.randn(100, 12)),
                               short_context.predict(long_input, window=16, overlap=4))
    assert not torch.allclose(short_context.predict(long_input), model.predict(long_input))
    assert model.predict(long_input, window=32, overlap=0).shape == (100, 6)
    with pytest.raises(ValueError, match="overlap"):
        model.predict(long_input, window=32, overlap=32)


def test_alternating_schedule_updates_one_group_at_a_time():
    schedule = AlternatingSchedule(total_steps=10, alternate_fraction=0.5)
    assert [schedule.phase(s) for s in range(6)] == ["memory", "model", "memory", "model", "memory", "joint"]
    torch.manual_seed(0)
    model = MemFaceAudioToExpression(memory="implicit", **TINY)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    memory_ids = {id(p) for p in model.memory_parameters()}
    for step, expect_memory_moves in ((0, True), (1, False)):
        before = {name: p.detach().clone() for name, p in model.named_parameters()}
        model(torch.randn(2, 6, 12)).expressions.pow(2).mean().add(model.memory_regulariser()).backward()
        schedule.mask_gradients(step, model.memory_parameters(), model.parameters())
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        moved = {id(p) for name, p in model.named_parameters() if not torch.equal(before[name], p)}
        # Only the scheduled group moves (some parameters, e.g. the key bias, never get a gradient).
        if expect_memory_moves:
            assert moved and moved <= memory_ids
        else:
            assert moved and not (moved & memory_ids)


def test_loss_ignores_masked_frames():
    predicted = torch.zeros(1, 4, 2)
    target = torch.tensor([[[1.0, 1.0], [1.0, 1.0], [9.0, 9.0], [9.0, 9.0]]])
    mask = torch.tensor([[True, True, False, False]])
    assert masked_mean((predicted - target).abs(), mask).item() == pytest.approx(1.0)
    vertices = torch.zeros(1, 4, 3, 3)
    loss = a2e_loss(predicted, target, vertices, vertices + 2, mask, torch.tensor(0.5), 1.0, 1.0, 0.1)
    assert loss.expression.item() == pytest.approx(1.0) and loss.vertex.item() == pytest.approx(12.0)
    assert loss.total.item() == pytest.approx(1.0 + 12.0 + 0.05)



def test_velocity_term_penalises_jitter_not_a_steady_offset():
    expressions = torch.zeros(1, 4, 2)
    target = torch.zeros(1, 4, 3, 3)
    mask = torch.tensor([[True, True, True, False]])
    steady = a2e_loss(expressions, expressions, target + 1, target, mask, torch.tensor(0.0), velocity_weight=2.0)
    jitter = target + torch.tensor([1.0, -1.0, 1.0, 50.0]).reshape(1, 4, 1, 1)        # same |error|; frame 3 masked
    jittery = a2e_loss(expressions, expressions, jitter, target, mask, torch.tensor(0.0), velocity_weight=2.0)
    assert steady.vertex.item() == pytest.approx(jittery.vertex.item()) == pytest.approx(3.0)
    assert steady.velocity.item() == pytest.approx(0.0) and jittery.velocity.item() == pytest.approx(12.0)
    assert jittery.total.item() == pytest.approx(3.0 + 2.0 * 12.0)
    assert a2e_loss(expressions, expressions, jitter, target, mask, torch.tensor(0.0)).velocity is None

def _mouth(opening: float) -> np.ndarray:
    vertices = np.zeros((102, 3))
    vertices[35, 1] = opening  # landmark 14 (lower inner lip) sits at position 35 of the mouth vertices
    return vertices


def test_metrics_follow_the_evaluation_definitions():
    true = np.stack([_mouth(o) for o in [0, 0.2, 0.2, 0.0, 0.2, 0.0, 0.2, 0.2, 0.0, 0.0]])
    assert mouth_opening(true)[1] == pytest.approx(0.2)
    phonemes = [["a", 0.04, 0.08], ["m", 0.12, 0.16], ["aa", 0.16, 0.20], ["p", 0.20, 0.24], ["a", 0.24, 0.32]]
    # τ = 0.25·median(0.2) = 0.05: a prediction at 0.04 counts as closed, 0.1 does not.
    predicted = mouth_opening(np.stack([_mouth(o) for o in [0, 0.2, 0.2, 0.04, 0.2, 0.1, 0.2, 0.2, 0, 0]]))
    assert bilabial_counts(predicted, mouth_opening(true), phonemes) == (1, 2)
    signal = np.sin(np.linspace(0, 12, 60))
    assert best_lag(np.roll(signal, 2), signal) == 2 and best_lag(signal, signal) == 0
    still = np.zeros((10, 102, 3))
    linear = still + np.arange(10)[:, None, None] * 0.1
    assert silence_jitter(linear, [], 25)[0] == pytest.approx(0.0, abs=1e-9)
    shaky = still.copy()
    shaky[5] += 1.0
    total, count = silence_jitter(shaky, [["a", 0.0, 0.08]], 25)  # frames 0-1 speak
    assert count == 7 and total > 0
    assert rmse(still + 0.5, still) == pytest.approx(0.5)


def _train(tiny_shards, tiny_corpus, out, epochs, resume=False):
    from memface_hub.training.train_a2e import A2ETrainingConfig, train_a2e

    corpus_root, _ = tiny_corpus
    return train_a2e(A2ETrainingConfig(
        shards=str(tiny_shards), output_dir=str(out), splits=str(corpus_root / "corpus.json"),
        frontend={"name": "mel", "n_mels": 20}, memory_slots=32, memory_dim=16, exp_dim=8, d_model=32,
        num_heads=2, num_layers=1, epochs=epochs, batch_size=4, window=32, resume=resume, progress=False))


def test_training_writes_best_model_and_resumes(tiny_shards, tiny_corpus, tmp_path):
    best = _train(tiny_shards, tiny_corpus, tmp_path / "run", epochs=2)
    state = json.loads((tmp_path / "run" / "trainer_state.json").read_text())
    assert state["epoch"] == 2 and len(state["history"]) == 2 and state["train_frames_per_s"] > 0
    model = MemFaceAudioToExpression.from_pretrained(best)
    assert model.frontend["name"] == "mel" and model.mouth_basis.abs().sum() > 0
    assert model.context_frames == 32  # the training window travels with the checkpoint
    _train(tiny_shards, tiny_corpus, tmp_path / "run", epochs=3, resume=True)
    state = json.loads((tmp_path / "run" / "trainer_state.json").read_text())
    assert state["epoch"] == 3 and [h["epoch"] for h in state["history"]] == [1, 2, 3]

    from memface_hub.data.a2e_clips import read_splits
    from memface_hub.evaluation.a2e_eval import evaluate_a2e

    corpus_root, _ = tiny_corpus
    metrics = evaluate_a2e(model, tiny_shards, corpus_root, read_splits(corpus_root / "corpus.json")["test"])
    assert metrics["utterances"] == 1 and np.isfinite(metrics["rmse"]) and metrics["frames"] > 0


def test_train_many_runs_side_by_side_and_skips_finished_ones(tiny_shards, tiny_corpus, tmp_path):
    from memface_hub.training.run_state import STATE_FILE
    from memface_hub.training.train_a2e import A2ETrainingConfig, run_is_finished, train_a2e_many

    corpus_root, _ = tiny_corpus
    configs = [A2ETrainingConfig(
        shards=str(tiny_shards), output_dir=str(tmp_path / memory), splits=str(corpus_root / "corpus.json"),
        frontend={"name": "mel", "n_mels": 20}, memory=memory, memory_slots=16, memory_dim=8, exp_dim=8, d_model=32,
        num_heads=2, num_layers=1, epochs=1, batch_size=4, window=32, progress=False)
        for memory in ("implicit", "none")]
    bests = train_a2e_many(configs, jobs=2)                    # two single-threaded processes
    assert [b.parent.name for b in bests] == ["implicit", "none"] and all(run_is_finished(c) for c in configs)
    assert MemFaceAudioToExpression.from_pretrained(bests[1]).implicit_memory is None
    stamps = [(b.parent / STATE_FILE).stat().st_mtime_ns for b in bests]
    train_a2e_many(configs, jobs=1)                            # finished: nothing is retrained
    assert [(b.parent / STATE_FILE).stat().st_mtime_ns for b in bests] == stamps


@pytest.mark.slow
def test_training_runs_under_accelerate_with_two_processes(tiny_shards, tiny_corpus, tmp_path):
    corpus_root, _ = tiny_corpus
    run_cli_under_accelerate("train-a2e", "--shards", str(tiny_shards), "--out", str(tmp_path / "ddp"),
                             "--splits", str(corpus_root / "corpus.json"), "--frontend", "mel", "--epochs", "2",
                             "--memory-slots", "16", "--d-model", "32", "--layers", "1", "--batch-size", "2",
                             "--window", "32")
    state = json.loads((tmp_path / "ddp" / "trainer_state.json").read_text())
    assert state["epoch"] == 2
    assert MemFaceAudioToExpression.from_pretrained(tmp_path / "ddp" / "best").memory_kind == "implicit"


def test_an_a2e_config_asking_for_a_million_layers_is_refused(tmp_path):
    import json

    from memface_hub.errors import MemFaceInputError

    model = MemFaceAudioToExpression(d_model=32, num_heads=2, num_encoder_layers=1, num_decoder_layers=1, ff_dim=64,
                                     memory_slots=16, memory_dim=16)
    model.save_pretrained(tmp_path / "a2e")
    path = tmp_path / "a2e" / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "num_encoder_layers": 1_000_000}))
    with pytest.raises(MemFaceInputError, match="field 'num_encoder_layers' must be in"):
        MemFaceAudioToExpression.from_pretrained(tmp_path / "a2e")


def test_real_clips_can_weigh_more_than_synthetic_ones(tmp_path):
    import json
    from types import SimpleNamespace

    from memface_hub.training.train_a2e import weigh_real_clips

    clips = [SimpleNamespace(clip_id=name) for name in ("real_a", "syn_b", "unlisted")]
    corpus = tmp_path / "corpus.json"
    corpus.write_text(json.dumps({"clips": {"real_a": {"source": "real"}, "syn_b": {"source": "synthetic"}}}))
    assert [c.clip_id for c in weigh_real_clips(clips, str(corpus), 3)] == \
        ["real_a", "syn_b", "unlisted", "real_a", "real_a"]
    assert weigh_real_clips(clips, str(corpus), 1) == clips and weigh_real_clips(clips, None, 3) == clips


def test_clip_timeline_finds_a_multi_person_corpus_clip_beside_its_video(tmp_path):
    """The a2e ablation measures a multi-person corpus's synthetic clips: their timelines sit beside the videos."""
    import json

    from memface_hub.errors import MemFaceInputError
    from memface_hub.evaluation.a2e_eval import clip_timeline

    face = tmp_path / "synthetic" / "anna" / "clips"
    face.mkdir(parents=True)
    (face / "s001_enus_r150p40.json").write_text(json.dumps({"phonemes": [["m", 0.1, 0.2]], "fps": 25}))
    clips = {"syn_anna_s001_enus_r150p40": {"source": "synthetic", "video": str(face / "s001_enus_r150p40.mp4")},
             "anna_real": {"source": "real", "video": str(tmp_path / "anna_real.mp4")}}
    (tmp_path / "corpus.json").write_text(json.dumps({"clips": clips, "a2e_splits": {}}))
    assert clip_timeline(tmp_path, "syn_anna_s001_enus_r150p40")["phonemes"] == [["m", 0.1, 0.2]]
    with pytest.raises(MemFaceInputError, match="no phoneme timeline"):
        clip_timeline(tmp_path, "anna_real")


def test_stretched_clip_targets_follow_the_slower_audio():
    from memface_hub.data.a2e_clips import A2EClip, stretch_clip

    count = 20
    ramp = np.arange(count, dtype=np.float32)
    valid = np.ones(count, bool)
    valid[10] = False
    clip = A2EClip("c", np.zeros((count, 4), np.float32), np.stack([ramp, -ramp], 1), np.zeros((3, 3), np.float32),
                   valid, np.repeat(ramp[:, None, None], 3, 1).repeat(3, 2))
    stretched = stretch_clip(clip, 1.5, np.ones((30, 4), np.float32))    # the audio played 1.5x as long
    assert stretched.expressions.shape == (30, 2) and stretched.vertices.shape == (30, 3, 3)
    np.testing.assert_allclose(stretched.expressions[:, 0], np.minimum(np.arange(30) / 1.5, count - 1), atol=1e-5)
    np.testing.assert_allclose(stretched.vertices[:, 0, 0], stretched.expressions[:, 0], atol=1e-5)
    # the untracked frame 10 spoils the frames read from beside it, 1.5x later: 14, 15 and 16 (from 9.3, 10, 10.7)
    assert np.flatnonzero(~stretched.valid).tolist() == [14, 15, 16]


def test_augmented_copies_of_a_clip_hear_another_recording_of_the_same_speech(tiny_shards):
    from memface_hub.audio import build_frontend
    from memface_hub.data.a2e_clips import augmented_clips, load_a2e_clips
    from memface_hub.io.shards import fit_mouth_model

    frontend = build_frontend({"name": "mel", "n_mels": 20})
    (clip,) = load_a2e_clips(tiny_shards, [sorted(p.name for p in tiny_shards.iterdir())[0]], frontend,
                             fit_mouth_model(tiny_shards, 8))
    copies = augmented_clips(tiny_shards, [clip], frontend, copies=3, seed=1)
    assert len(copies) == 3 and all(copy.clip_id == clip.clip_id for copy in copies)
    lengths = [len(copy.features) for copy in copies]
    assert all(len(copy.expressions) == len(copy.valid) == length for copy, length in zip(copies, lengths))
    assert all(0.87 * len(clip.features) <= length <= 1.13 * len(clip.features) for length in lengths)
    assert len(set(lengths)) > 1                                  # each copy draws its own speed
    for copy in copies:                                            # another sound: other features
        overlap = min(len(copy.features), len(clip.features))
        assert np.abs(copy.features[:overlap] - clip.features[:overlap]).mean() > 0.05
    for copy in copies:                                            # the targets are the clip's, stretched in time
        factor = len(copy.features) / len(clip.features)
        middle = len(copy.features) // 2
        source = min(int(round(middle / factor)), len(clip.features) - 1)
        assert np.abs(copy.expressions[middle] - clip.expressions[source]).max() <= \
            np.abs(np.diff(clip.expressions, axis=0)).max() * 2 + 1e-5
    assert augmented_clips(tiny_shards, [clip], frontend, copies=0) == []


def test_the_best_model_can_be_picked_on_another_validation_split(tiny_shards, tmp_path):
    from memface_hub.training.run_state import split_shards

    names = sorted(path.name for path in tiny_shards.iterdir())
    splits = tmp_path / "corpus.json"
    splits.write_text(json.dumps({"a2e_splits": {"train": names[:1], "val": names[1:2], "val_real": names[2:]}}))
    assert split_shards(tiny_shards, splits, key="a2e_splits") == (names[:1], names[1:2])
    assert split_shards(tiny_shards, splits, key="a2e_splits", val_split="val_real") == (names[:1], names[2:])
    with pytest.raises(ValueError, match="no split named 'val_people'"):
        split_shards(tiny_shards, splits, key="a2e_splits", val_split="val_people")


def test_training_adds_augmented_copies_of_the_real_clips_only(tiny_shards, tiny_corpus, tmp_path):
    """--real-augment N: each real clip is heard N more times (as augmented copies); synthetic clips are not."""
    from memface_hub.training.train_a2e import A2ETrainingConfig, train_a2e

    corpus_root, _ = tiny_corpus
    index = json.loads((corpus_root / "corpus.json").read_text())
    train, val = index["splits"]["train"], index["splits"]["val"]

    def steps(name: str, sources: dict, copies: int) -> int:
        splits = tmp_path / f"{name}.json"
        splits.write_text(json.dumps({"a2e_splits": {"train": train, "val": val},
                                      "clips": {clip: {"source": source} for clip, source in sources.items()}}))
        train_a2e(A2ETrainingConfig(
            shards=str(tiny_shards), output_dir=str(tmp_path / name), splits=str(splits), real_augment=copies,
            frontend={"name": "mel", "n_mels": 20}, memory_slots=16, memory_dim=8, exp_dim=8, d_model=16,
            num_heads=2, num_layers=1, epochs=1, batch_size=1, window=32, progress=False))
        return json.loads((tmp_path / name / "trainer_state.json").read_text())["step"]

    plain = steps("plain", {clip: "real" for clip in train}, 0)
    assert steps("real", {clip: "real" for clip in train}, 2) >= 3 * plain - 2 * len(train)   # ± a window per copy
    assert steps("synthetic", {clip: "synthetic" for clip in train}, 2) == plain
