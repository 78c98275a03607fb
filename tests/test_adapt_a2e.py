"""a2e adaptation (paper Sec. 4.2): fine-tuned on a speaker's speech, kept only when it lowers the held-out
mouth error, stored as a validated float16 delta beside the speaker memory, applied at generation."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest
import torch
from test_real_speech import load_script, tiny_real_corpus  # noqa: F401 (the fixture, shared)

from conftest import write_video
from memface_hub.a2e import (
    A2E_DELTA_FILE,
    MemFaceAudioToExpression,
    a2e_delta_metadata,
    a2e_fingerprint,
    apply_a2e_delta,
)
from memface_hub.arrays_io import load_arrays, save_arrays
from memface_hub.audio import build_frontend
from memface_hub.errors import MemFaceInputError
from memface_hub.io import read_frames
from memface_hub.io.audio import load_audio
from memface_hub.io.shards import fit_mouth_model, load_shard
from memface_hub.pipeline import MemFacePipeline
from memface_hub.renderer import MemFaceRenderer
from memface_hub.speaker import SpeakerMemory
from memface_hub.training.adapt import adapt_speaker
from memface_hub.training.adapt_a2e import adapt_a2e, finetune_a2e, speech_clip, vertex_rmse


def tiny_a2e(shards) -> MemFaceAudioToExpression:
    """A small a2e model with the corpus's mouth model (the seed fixes its weights)."""
    torch.manual_seed(0)
    model = MemFaceAudioToExpression(d_model=32, num_heads=2, num_encoder_layers=1, num_decoder_layers=1,
                                     ff_dim=64, memory_slots=16, memory_dim=16, frontend={"name": "mel"},
                                     context_frames=16, dropout=0.0)
    model.set_mouth_model(fit_mouth_model(shards, 16).basis)
    return model.eval()


@pytest.fixture(scope="module")
def shard(tiny_shards):
    return sorted(path for path in tiny_shards.iterdir() if path.is_dir())[0]


@pytest.fixture(scope="module")
def adapted(tiny_shards, shard, tmp_path_factory):
    """A speaker folder from the shard (it has speech) with an a2e delta written by the adaptation hook."""
    base = tiny_a2e(tiny_shards)
    folder = SpeakerMemory.build(shard, num_entries=12).save_pretrained(tmp_path_factory.mktemp("a2e") / "speaker")
    result = adapt_a2e(base, speech_clip(shard, base), folder, steps=6, learning_rate=1e-2, held_out_check=False,
                       progress=False)
    return base, folder, result


def test_the_adapter_is_written_when_the_clip_has_speech(adapted):
    base, folder, result = adapted
    assert result is not None and result.kept and result.steps == 6
    delta = load_arrays(folder / A2E_DELTA_FILE)
    assert delta and all(array.dtype == np.float16 for array in delta.values())
    assert {name.split(".")[0] for name in delta} <= {"implicit_memory", "decoder", "head"}   # the encoder is frozen
    assert {"implicit_memory", "decoder"} <= {name.split(".")[0] for name in delta}


def test_adapt_speaker_adapts_the_a2e_only_with_speech_and_a_budget(tiny_corpus, tiny_shards, tmp_path):
    root, index = tiny_corpus
    video = root / index["clips"][0]["video"]
    base = tiny_a2e(tiny_shards)
    spoken = adapt_speaker(video, tmp_path / "spoken", entries=12, a2e=base, a2e_finetune_steps=3,
                           held_out_check=False, progress=False)
    assert spoken.a2e_adapted and spoken.a2e_finetune_steps == 3 and (spoken.speaker_dir / A2E_DELTA_FILE).is_file()
    no_budget = adapt_speaker(video, tmp_path / "no_budget", entries=12, a2e=base, progress=False)
    assert not no_budget.a2e_adapted and not (no_budget.speaker_dir / A2E_DELTA_FILE).exists()
    # the same face with a muted sound track: no speech, nothing to learn lips from, no adapter
    muted = write_video(tmp_path / "muted.mp4", read_frames(video), audio=np.zeros(16_000 * 3, np.float32))
    silent = adapt_speaker(muted, tmp_path / "silent", entries=12, a2e=base, a2e_finetune_steps=3,
                           held_out_check=False, progress=False)
    assert not silent.a2e_adapted and silent.a2e_finetune_steps == 0
    assert not (silent.speaker_dir / A2E_DELTA_FILE).exists()
    # the articulation gain: measured with that a2e model where there is speech, absent without
    from memface_hub.a2e import a2e_fingerprint
    from memface_hub.training.adapt_a2e import GAIN_RANGE, articulation_gain

    stored = SpeakerMemory.from_pretrained(no_budget.speaker_dir).meta["articulation"]
    assert stored["a2e"] == a2e_fingerprint(base) and GAIN_RANGE[0] <= stored["gain"] <= GAIN_RANGE[1]
    shard = sorted(p for p in tiny_shards.iterdir() if p.is_dir() and p.name == index["clips"][0]["clip_id"])[0]
    assert stored["gain"] == pytest.approx(articulation_gain(base, speech_clip(shard, base)), abs=0.05)
    assert "articulation" not in SpeakerMemory.from_pretrained(silent.speaker_dir).meta


def test_generation_applies_the_adapter_exactly(adapted, shard):
    base, folder, result = adapted
    renderer = MemFaceRenderer(crop_size=64, base_channels=8, depth=2)
    pipe = MemFacePipeline(copy.deepcopy(base), renderer)
    speaker = SpeakerMemory.from_pretrained(folder)
    audio = load_audio(load_shard(shard).audio_path)[:16_000]                      # 1 s of the clip's speech
    features = build_frontend("mel")(audio, 16_000)
    output = pipe((audio, 16_000), speaker, progress=False)
    tuned = result.model.predict(features).numpy()
    assert np.array_equal(output.expressions, tuned)                               # exactly the tuned model
    assert not np.allclose(tuned, base.predict(features).numpy(), atol=1e-4)       # which differs from the base
    other = SpeakerMemory.from_pretrained(SpeakerMemory.build(shard, num_entries=12).save_pretrained(
        folder.parent / "plain"))                                                  # the same person, no adapter
    assert np.array_equal(pipe((audio, 16_000), other, progress=False).expressions, base.predict(features).numpy())

    def live(person):                                                              # a live stream of 5 chunks
        chunks = iter(np.array_split(audio, 5))
        return np.concatenate([e for _, e, _, _ in pipe.stream(chunks, person, progress=False)])
    assert not np.allclose(live(speaker), live(other), atol=1e-4)                  # a live stream uses it too


@pytest.mark.parametrize("attack", ["stowaway", "encoder", "shape", "float32", "nan", "other_base", "format",
                                    "pickle"])
def test_a_hostile_adapter_is_refused_with_one_line_naming_the_file(adapted, tmp_path, attack):
    base, folder, _ = adapted
    delta = load_arrays(folder / A2E_DELTA_FILE)
    metadata = a2e_delta_metadata(base)
    name = sorted(delta)[0]
    if attack == "stowaway":
        delta["stowaway"] = np.zeros(1, np.float16)
    elif attack == "encoder":                                     # exists in the model, but adaptation never changes it
        delta["encoder.layers.0.linear1.bias"] = np.zeros(64, np.float16)
    elif attack == "shape":
        delta[name] = np.zeros((3, 3), np.float16)
    elif attack == "float32":
        delta[name] = delta[name].astype(np.float32)
    elif attack == "nan":
        delta[name] = np.full_like(delta[name], np.nan)
    elif attack == "other_base":
        metadata["base_a2e"] = "0" * 16
    elif attack == "format":
        metadata["format"] = "memface-renderer-delta"
    target = tmp_path / "speaker"
    shutil.copytree(folder, target)
    if attack == "pickle":
        (target / A2E_DELTA_FILE).write_bytes(b"\x80\x04\x95pickled")
    else:
        save_arrays(target / A2E_DELTA_FILE, delta, metadata=metadata)
    pipe = MemFacePipeline(copy.deepcopy(base), MemFaceRenderer(crop_size=64, base_channels=8, depth=2))
    with pytest.raises(MemFaceInputError) as caught:
        pipe.a2e_for(SpeakerMemory.from_pretrained(target))
    message = str(caught.value)
    assert message.startswith(str(target / A2E_DELTA_FILE)) and "\n" not in message
    before = a2e_fingerprint(base)
    with pytest.raises(MemFaceInputError):
        apply_a2e_delta(base, target / A2E_DELTA_FILE)
    assert a2e_fingerprint(base) == before                                          # nothing half-applied


def test_finetuning_that_hurts_the_held_out_end_is_not_kept(tiny_shards, shard):
    base = tiny_a2e(tiny_shards)
    clip = speech_clip(shard, base)
    held_out = clip.features.shape[0] - int(clip.features.shape[0] * 0.8)
    # A learning rate far too large wrecks the model: checked against the clip's held-out end, nothing is kept …
    wrecked = finetune_a2e(base, clip, steps=4, learning_rate=10.0, progress=False)
    assert not wrecked.kept and wrecked.steps == 4 and wrecked.held_out_frames == held_out
    assert all(torch.equal(a, b) for a, b in zip(wrecked.model.state_dict().values(), base.state_dict().values()))
    unchecked = finetune_a2e(base, clip, steps=4, learning_rate=10.0, held_out_check=False, progress=False)
    assert unchecked.kept and vertex_rmse(unchecked.model, clip) > vertex_rmse(base, clip)
    # … and one that helps is kept, with a lower held-out error.
    helped = finetune_a2e(base, clip, steps=30, learning_rate=3e-3, progress=False)
    assert helped.kept and helped.error < helped.base_error


def test_the_adapter_travels_with_the_speaker_on_the_hub(adapted, hub_env):
    base, folder, result = adapted
    repo_id = hub_env.repo_id("a2e-adapted")
    SpeakerMemory.from_pretrained(folder).push_to_hub(repo_id, license="cc-by-nc-4.0",
                                                      consent="Synthetic test speaker (espeak-ng voice, drawn face).")
    pulled = SpeakerMemory.from_pretrained(repo_id)
    pipe = MemFacePipeline(copy.deepcopy(base), MemFaceRenderer(crop_size=64, base_channels=8, depth=2))
    features = torch.randn(40, base.feature_dim)
    assert torch.equal(pipe.a2e_for(pulled).predict(features), result.model.predict(features))


def test_real_speech_eval_gains_before_and_after_rows(tiny_real_corpus, tmp_path):  # noqa: F811
    corpus, people_file, a2e = tiny_real_corpus
    out = tmp_path / "real_speech.json"
    assert load_script().main(["--corpus", str(corpus), "--a2e", str(a2e), "--people", str(people_file),
                               "--no-closure", "--a2e-adapt-steps", "4", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    adaptation = result["a2e_adaptation"]
    assert result["config"]["a2e_adapt_steps"] == 4 and adaptation["steps"] == 4
    for rows in (adaptation["before"], adaptation["after"]):
        assert [row["clip"] for row in rows["clips"]] == ["grid_bbaf2n", "talk_a"]
        assert all(set(row) == set(load_script().CLIP_KEYS) for row in rows["clips"])
        assert set(rows["summary"]) == set(result["summary"])
    assert adaptation["before"]["clips"] == result["clips"]            # "before" is the unadapted model's table
    adaptation_frames = {"grid_bbaf2n": 52, "talk_a": 42}             # the part before the cut only
    rows = zip(adaptation["fine_tuning"], adaptation["before"]["clips"], adaptation["after"]["clips"])
    for run, before, after in rows:
        assert run["steps"] == 4 and run["train_frames"] + run["held_out_frames"] == adaptation_frames[run["clip"]]
        if not run["kept"]:
            assert after == before                                     # nothing kept: the same model, the same row


def test_real_speech_eval_compares_models_on_the_same_clips(tiny_real_corpus, tmp_path):  # noqa: F811
    """--compare: each model's summary on the test parts (the main table's, for --a2e itself) and on whole clips."""
    corpus, people_file, a2e = tiny_real_corpus
    other = tmp_path / "other_a2e"
    model = MemFaceAudioToExpression.from_pretrained(str(a2e))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    model.save_pretrained(other)
    out = tmp_path / "real_speech.json"
    assert load_script().main(["--corpus", str(corpus), "--a2e", str(a2e), "--people", str(people_file),
                               "--no-closure", "--a2e-adapt-steps", "0", "--compare", str(other),
                               "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = result["frontend_comparison"]
    assert [row["a2e"] for row in rows] == [str(a2e), str(other)] and result["config"]["compare"] == [str(other)]
    assert rows[0]["test_part"]["summary"] == result["summary"]      # the same clips and figures as the main table
    assert rows[1]["test_part"]["lip_corr_0"] != rows[0]["test_part"]["lip_corr_0"]
    for row in rows:
        assert set(row["whole_clip"]["lip_corr_0"]) == {"grid_bbaf2n", "talk_a"}


def test_a_time_budget_works_too(tiny_shards, shard):
    base = tiny_a2e(tiny_shards)
    result = finetune_a2e(base, speech_clip(shard, base), seconds=1.0, progress=False)
    assert result.steps > 0 and 1.0 <= result.seconds < 60.0      # the budget is training time; checks come on top
    assert result.base_error is not None and (result.error < result.base_error if result.kept
                                              else result.error == result.base_error)


def test_the_command_line_adapts_and_generation_refuses_a_bad_adapter(tiny_corpus, tiny_shards, adapted, tmp_path,
                                                                       capsys):
    from memface_hub.cli import main

    root, index = tiny_corpus
    base, folder, _ = adapted
    base.save_pretrained(tmp_path / "a2e")
    assert main(["adapt", str(root / index["clips"][0]["video"]), "--out", str(tmp_path / "speaker"), "--entries", "12",
                 "--a2e", str(tmp_path / "a2e"), "--a2e-finetune-steps", "3"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["a2e_finetune_steps"] == 3
    assert report["a2e_adapted"] == (tmp_path / "speaker" / A2E_DELTA_FILE).is_file()
    # generation with an adapter made for another a2e model: one line naming the file, exit code 2
    MemFacePipeline(base, MemFaceRenderer(crop_size=64, base_channels=8, depth=2)).save_pretrained(tmp_path / "pipe")
    shutil.copytree(folder, tmp_path / "stranger")
    save_arrays(tmp_path / "stranger" / A2E_DELTA_FILE, load_arrays(folder / A2E_DELTA_FILE),
                metadata={**a2e_delta_metadata(base), "base_a2e": "0123456789abcdef"})
    assert main(["generate", "--text", "Hi.", "--speaker", str(tmp_path / "stranger"),
                 "--model", str(tmp_path / "pipe"), "--out", str(tmp_path / "hi.mp4")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and str(tmp_path / "stranger" / A2E_DELTA_FILE) in error[0] and "another a2e" in error[0]
    assert not (tmp_path / "hi.mp4").exists()
