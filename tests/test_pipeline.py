"""MemFacePipeline: audio + speaker → video, streamed; save/load; bad input; the bundled demo."""

from __future__ import annotations

import copy
import json
import os
import subprocess

import numpy as np
import pytest
import torch

from conftest import tone
from memface_hub.a2e import MemFaceAudioToExpression
from memface_hub.errors import MemFaceInputError
from memface_hub.io import read_frames
from memface_hub.io.video import SYNTHETIC_LABEL, ffmpeg_exe, probe
from memface_hub.pipeline import (
    DEMO_PIPELINE,
    DEMO_SPEAKER,
    MemFacePipeline,
    fast_dtype,
    load_speaker,
    pingpong_indices,
)
from memface_hub.renderer import MemFaceRenderer
from memface_hub.speaker import SpeakerMemory


@pytest.fixture(scope="module")
def speaker(tiny_shards, tmp_path_factory):
    shard = sorted(p for p in tiny_shards.iterdir() if p.is_dir())[0]
    memory = SpeakerMemory.build(shard, num_entries=12)
    return SpeakerMemory.from_pretrained(memory.save_pretrained(tmp_path_factory.mktemp("spk") / "speaker"))


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    a2e = MemFaceAudioToExpression(d_model=32, num_heads=2, num_encoder_layers=1, num_decoder_layers=1, ff_dim=64,
                                   memory_slots=16, memory_dim=16, frontend={"name": "mel"})
    a2e.set_mouth_model(torch.randn(16, a2e.num_mouth_vertices * 3) * 0.01)
    renderer = MemFaceRenderer(crop_size=64, base_channels=8, depth=2)
    return MemFacePipeline(a2e, renderer)


def test_pingpong_covers_any_length():
    assert pingpong_indices(0, 9, 4).tolist() == [0, 1, 2, 3, 2, 1, 0, 1, 2]
    assert pingpong_indices(5, 3, 4).tolist() == [1, 0, 1]
    assert pingpong_indices(0, 3, 1).tolist() == [0, 0, 0]


def test_generation_changes_only_the_mouth_and_is_deterministic(pipe, speaker):
    audio = (tone(1.0), 16_000)
    result = pipe(audio, speaker, generator=torch.Generator().manual_seed(3))
    template = read_frames(speaker.template_path)
    assert result.num_frames == 25 and result.frames.shape == (25, *template.shape[1:])
    assert result.expressions.shape == (25, 16) and result.retrievals.shape == (25, 4)
    assert (result.retrievals >= 0).all() and (result.retrievals < speaker.num_entries).all()
    index = pingpong_indices(0, 25, len(speaker.poses))
    changed = np.abs(result.frames.astype(int) - template[index].astype(int)).max(axis=-1) > 0   # (T, H, W)
    assert changed.any()
    rows, columns = np.nonzero(changed.any(axis=0))
    height, width = changed.shape[1:]
    # the mouth is in the lower middle of the face: the top of the frame is never touched
    assert rows.min() > height * 0.3 and columns.min() > 0 and columns.max() < width - 1
    again = pipe(audio, speaker, generator=torch.Generator().manual_seed(4))
    assert np.array_equal(again.frames, result.frames)
    assert set(result.timings) >= {"features", "a2e", "drawing", "renderer", "paste_back", "first_frame_s"}


def test_stream_yields_bounded_chunks(pipe, speaker):
    chunks = list(pipe.stream((tone(2.0), 16_000), speaker, chunk_size=8))
    assert [len(c[0]) for c in chunks] == [8] * 6 + [2]


def test_generate_to_file_writes_a_labelled_video_with_audio(pipe, speaker, tmp_path):
    out = tmp_path / "talk.mp4"
    result = pipe.generate_to_file((tone(1.2, 22_050), 22_050), speaker, out)
    info = probe(out)
    assert result.path == out and info.has_audio and info.has_video
    assert abs(info.duration - 1.2) < 0.15 and result.num_frames == 30
    tags = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(out)], capture_output=True, text=True).stderr
    assert SYNTHETIC_LABEL in tags
    assert [p.name for p in tmp_path.iterdir()] == ["talk.mp4"]  # no temporary files left behind


def test_save_and_load_round_trip(pipe, speaker, tmp_path):
    folder = pipe.save_pretrained(tmp_path / "pipe")
    index = json.loads((folder / "model_index.json").read_text())
    assert index["a2e"] == ["memface_hub", "MemFaceAudioToExpression"] and index["format_version"] == 1
    assert not list(folder.rglob("*.bin")) and (folder / "README.md").is_file()
    loaded = MemFacePipeline.from_pretrained(folder)
    audio = (tone(0.6), 16_000)
    assert np.array_equal(loaded(audio, speaker).frames, pipe(audio, speaker).frames)


def test_a_tampered_index_is_refused(pipe, tmp_path):
    folder = pipe.save_pretrained(tmp_path / "pipe")
    index = json.loads((folder / "model_index.json").read_text())
    index["renderer"] = ["os", "system"]
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(MemFaceInputError, match="component 'renderer' must be"):
        MemFacePipeline.from_pretrained(folder)
    index["renderer"], index["format_version"] = ["memface_hub", "MemFaceRenderer"], 99
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(MemFaceInputError, match="format version 99 is not supported"):
        MemFacePipeline.from_pretrained(folder)


def test_bad_inputs_give_one_line_errors_and_no_output(pipe, speaker, tmp_path):
    pipe_limited = MemFacePipeline(pipe.a2e, pipe.renderer, max_audio_seconds=1.0)
    out = tmp_path / "out.mp4"
    with pytest.raises(MemFaceInputError, match="limit is 1 s"):
        pipe_limited.generate_to_file((tone(2.0), 16_000), speaker, out)
    with pytest.raises(MemFaceInputError, match="not writable|does not exist"):
        pipe.generate_to_file((tone(0.5), 16_000), speaker, tmp_path / "missing" / "out.mp4")
    with pytest.raises(MemFaceInputError, match="silent"):
        pipe.generate_to_file((np.zeros(16_000, np.float32), 16_000), speaker, out)
    with pytest.raises(MemFaceInputError, match="no such file|not found"):
        pipe((str(tmp_path / "nope.wav")), speaker)
    with pytest.raises(MemFaceInputError, match="text: is empty"):
        pipe.speak("  ")
    assert list(tmp_path.iterdir()) == []
    # an existing output survives a failed generation untouched
    out.write_bytes(b"keep me")
    with pytest.raises(MemFaceInputError):
        pipe_limited.generate_to_file((tone(2.0), 16_000), speaker, out)
    assert out.read_bytes() == b"keep me"
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(MemFaceInputError, match="not writable"):
            pipe.generate_to_file((tone(0.5), 16_000), speaker, locked / "out.mp4")


def test_text_is_spoken_with_espeak(pipe, speaker):
    samples, rate = pipe.speak("Hello there.")
    result = pipe((samples, rate), speaker)
    assert rate == 22_050 and result.num_frames == round(len(samples) / rate * 25)


@pytest.mark.skipif(not (DEMO_PIPELINE / "model_index.json").exists(), reason="bundled demo weights not built")
def test_bundled_demo_renders_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pipe = MemFacePipeline.from_pretrained()
    speaker = load_speaker("demo")
    assert speaker.template_path.parent == DEMO_SPEAKER
    result = pipe(pipe.speak("Bob and Pam met by the map."), speaker)
    assert result.frames.shape[0] == result.num_frames > 25
    # the mouth moves: the mouth opening of the predicted vertices varies over the utterance
    assert result.expressions.std(axis=0).max() > 0.01


def test_cli_generate_speaks_text_and_reports_bad_input(pipe, speaker, tmp_path, capsys, monkeypatch):
    from memface_hub.cli import main

    model = pipe.save_pretrained(tmp_path / "model")
    out = tmp_path / "hello.mp4"
    assert main(["generate", "--text", "Hello there.", "--model", str(model),
                 "--speaker", str(speaker.template_path.parent), "--out", str(out)]) == 0
    assert probe(out).has_audio and probe(out).duration > 0.5
    capsys.readouterr()
    code = main(["generate", "--text", "Hi.", "--model", str(model), "--speaker", str(speaker.template_path.parent),
                 "--out", str(tmp_path / "no" / "dir" / "x.mp4")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "does not exist" in err and "\n" not in err
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = main(["generate", "--text", "Hi.", "--model", str(model), "--speaker", "nobody/no-such-speaker",
                 "--out", str(tmp_path / "y.mp4")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "nobody/no-such-speaker" in err and "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hello.mp4", "model"]


def test_pipeline_round_trip_through_the_hub_and_offline_cache(pipe, speaker, hub_env):
    repo_id = hub_env.repo_id("pipeline")
    url = pipe.push_to_hub(repo_id)
    assert url.endswith(repo_id)
    loaded = MemFacePipeline.from_pretrained(repo_id)
    audio = (tone(0.6), 16_000)
    assert np.array_equal(loaded(audio, speaker).frames, pipe(audio, speaker).frames)
    # a fresh process, configured by environment only, loads it again from the cache with the Hub offline
    script = ("import os; from memface_hub import MemFacePipeline; "
              "p = MemFacePipeline.from_pretrained(os.environ['REPO']); print(p.renderer.crop_size)")
    before = len(hub_env.server.log)
    offline = hub_env.run_python(script, REPO=repo_id, HF_HUB_OFFLINE="1")
    assert offline.returncode == 0, offline.stderr
    assert offline.stdout.strip().endswith("64") and len(hub_env.server.log) == before


def test_a_pipeline_repo_with_pickle_files_is_refused(pipe, hub_env):
    from huggingface_hub import HfApi

    repo_id = hub_env.repo_id("pickled")
    pipe.push_to_hub(repo_id)
    HfApi().upload_file(repo_id=repo_id, path_or_fileobj=b"\x80\x04 not really a pickle",
                        path_in_repo="renderer/pytorch_model.bin")
    with pytest.raises(MemFaceInputError, match="pickle-capable files"):
        MemFacePipeline.from_pretrained(repo_id)
    with pytest.raises(MemFaceInputError, match="cannot load the pipeline from the Hub"):
        MemFacePipeline.from_pretrained(hub_env.repo_id("missing"))


def test_half_precision_renderer_on_request(pipe, speaker):
    half = MemFacePipeline(pipe.a2e, copy.deepcopy(pipe.renderer)).to("cpu", torch.bfloat16)
    assert next(half.renderer.parameters()).dtype == torch.bfloat16
    audio = (tone(0.4), 16_000)
    reference = pipe(audio, speaker).frames.astype(int)
    result = half(audio, speaker).frames.astype(int)
    assert result.shape == reference.shape and np.abs(result - reference).mean() < 3.0


def test_to_keeps_what_it_is_not_given(pipe):
    moved = MemFacePipeline(pipe.a2e, copy.deepcopy(pipe.renderer))
    moved.to(dtype=torch.bfloat16)
    moved.to("cpu")                                             # a device alone keeps the dtype
    assert moved.dtype == torch.bfloat16 and next(moved.renderer.parameters()).dtype == torch.bfloat16
    moved.to(torch.float16)                                     # a dtype alone, positionally
    assert next(moved.renderer.parameters()).dtype == torch.float16 and moved.device == torch.device("cpu")
    assert next(moved.a2e.parameters()).dtype == torch.float32
    with pytest.raises(ValueError):
        moved.to(torch.int64)
    with pytest.raises(TypeError):
        moved.to(3)
    # the renderer's convolutions stay in oneDNN's channels-last layout through every move
    weight = moved.renderer.stem[0].weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()


def test_fast_dtype_is_bfloat16_only_where_it_is_native():
    assert fast_dtype("cpu") == (torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else torch.float32)
    assert fast_dtype("not-a-device") == torch.float32 and fast_dtype("meta") == torch.float32


def test_from_pretrained_takes_the_diffusers_keywords_and_half_checkpoints(pipe, tmp_path):
    folder = pipe.save_pretrained(tmp_path / "pipe")
    half = MemFacePipeline.from_pretrained(folder, torch_dtype=torch.bfloat16, local_files_only=True,
                                           force_download=False)
    assert next(half.renderer.parameters()).dtype == torch.bfloat16
    # a checkpoint saved in float16 loads (cast on load) into the float32 model
    half16 = MemFacePipeline(pipe.a2e, copy.deepcopy(pipe.renderer)).to(torch.float16)
    folder16 = half16.save_pretrained(tmp_path / "pipe16")
    loaded = MemFacePipeline.from_pretrained(folder16)
    reference = {k: v.float() for k, v in pipe.renderer.state_dict().items()}
    for name, value in loaded.renderer.state_dict().items():
        assert value.dtype == reference[name].dtype
        torch.testing.assert_close(value, reference[name].to(torch.float16).float())
    with pytest.raises(ValueError):
        MemFacePipeline.from_pretrained(folder, torch_dtype=torch.float16, dtype=torch.bfloat16)


def test_a_list_of_clips_is_refused_and_progress_is_configurable(pipe, speaker, capsys):
    with pytest.raises(MemFaceInputError, match="list of 2 inputs"):
        pipe([(tone(0.4), 16_000), (tone(0.4), 16_000)], speaker)
    pipe.set_progress_bar_config(desc="talking")
    pipe((tone(0.4), 16_000), speaker)
    assert "talking" in capsys.readouterr().err                # on by default, with the configured options
    pipe.set_progress_bar_config(disable=True)
    pipe((tone(0.4), 16_000), speaker)
    assert "talking" not in capsys.readouterr().err
    pipe.set_progress_bar_config()


def test_pipeline_push_without_a_namespace_goes_to_the_token_owner(pipe, hub_env):
    name = hub_env.repo_id("bare").split("/")[1]
    url = pipe.push_to_hub(name)
    assert ("model", f"{hub_env.user}/{name}") in hub_env.server.repos and url.endswith(f"{hub_env.user}/{name}")


def test_a_live_stream_of_chunks_gives_frames_with_bounded_lookahead(pipe, speaker):
    """Microphone-style input: 40 ms chunks arrive one by one; a frame comes out once the audio reaches
    `lookahead_frames` past it, never waiting for the end; the end flushes the rest; the frames match the
    count of a whole-input generation, and the first ones come before the stream ends."""
    speech = (tone(2.0) * (0.5 + 0.5 * np.sin(np.arange(32_000) / 800.0))).astype(np.float32)
    speech[:4_000] = 0.0                                          # a live stream may start silent
    fed = []

    def microphone():
        for start in range(0, len(speech), 640):
            fed.append(start + 640)
            yield speech[start:start + 640]

    made, fed_when_made = 0, []
    for frames, expressions, entries, _ in pipe.stream(microphone(), speaker, lookahead_frames=4, progress=False):
        assert frames.shape[0] == expressions.shape[0] == entries.shape[0] >= 1
        made += len(frames)
        fed_when_made.append((made, fed[-1] if fed else 0))
    assert made == 50                                             # 2 s at 25 fps, as for the whole input
    assert made == pipe(speech, speaker, sampling_rate=16_000, progress=False).num_frames
    assert fed_when_made[0][1] < len(speech)                              # frames came out before the stream ended
    assert all(samples_fed <= (count + 4) * 640 for count, samples_fed in fed_when_made[:-1])   # bounded lookahead
    with pytest.raises(MemFaceInputError, match="mono"):
        list(pipe.stream(iter([np.zeros((2, 640), np.float32)]), speaker, progress=False))


def test_the_pipeline_card_has_the_paper_uses_and_the_publishers_licence(pipe):
    card = pipe.model_card("someone/memface", training_data="some people", evaluation="ΔE 2.0 on 5 people",
                           license="cc-by-nc-4.0")
    assert "license: cc-by-nc-4.0" in card and "arxiv.org/abs/2212.05005" in card and "@article{" in card
    assert "## Out-of-scope use" in card and "Impersonation" in card and "ΔE 2.0 on 5 people" in card
    assert "pip install memface_hub" in card


def test_template_frames_without_the_face_are_left_untouched(pipe, speaker, tmp_path):
    from dataclasses import replace

    face = np.ones(len(speaker.poses), bool)
    face[:5] = False                                              # e.g. the person turned away or left the shot
    folder = replace(speaker, face=face).save_pretrained(tmp_path / "partly_faceless")
    loaded = SpeakerMemory.from_pretrained(folder)
    assert np.array_equal(loaded.face, face)
    result = pipe((tone(0.4), 16_000), loaded, progress=False)
    template = read_frames(loaded.template_path)
    index = pingpong_indices(0, result.num_frames, len(loaded.poses))
    for frame, source in zip(result.frames, index):
        same = np.array_equal(frame, template[source])
        assert same == (not face[source])                          # untouched exactly when there is no face


def test_a_short_generation_decodes_only_the_template_frames_it_uses(pipe, speaker):
    from memface_hub.pipeline import TemplateFrames

    template = TemplateFrames(speaker)
    assert template.decoded == 1 and len(template) == len(speaker.poses)
    frames = template.take(np.array([0, 1, 2, 1]))
    assert template.decoded == 3 and frames.shape[0] == 4
    assert np.array_equal(frames[1], frames[3])
    whole = read_frames(speaker.template_path)
    assert np.array_equal(template.take(np.array([len(speaker.poses) - 1]))[0], whole[len(speaker.poses) - 1])


def test_the_memorys_detail_needs_no_template_frames_beyond_those_generation_paints_into(pipe, speaker):
    from dataclasses import replace

    detailed = replace(speaker, meta={**speaker.meta})                    # a fresh speaker: its own context
    pipe.memory_detail = True
    result = pipe((tone(0.2), 16_000), detailed, progress=False)           # 5 frames of a longer template
    assert len(detailed.poses) > 2 * result.num_frames
    assert pipe._prepare_speaker(detailed).template.decoded == result.num_frames
    plain = replace(speaker, meta={**speaker.meta})
    pipe.memory_detail = False
    try:
        without = pipe((tone(0.2), 16_000), plain, progress=False)
    finally:
        pipe.memory_detail = True
    assert not np.array_equal(result.frames, without.frames)              # the detail step did run


def test_the_frame_keeps_its_own_skin_beyond_the_mouth_region(pipe, speaker):
    from dataclasses import replace

    template = read_frames(speaker.template_path)
    changed = {}
    for region in (0.2, 0.0):                        # 0: the renderer's whole mouth box is pasted
        pipe.mouth_region = region
        try:
            result = pipe((tone(0.2), 16_000), replace(speaker, meta={**speaker.meta}), progress=False)
        finally:
            pipe.mouth_region = 0.2
        index = pingpong_indices(0, result.num_frames, len(speaker.poses))
        changed[region] = np.mean([np.any(frame != template[i], axis=-1).sum()
                                   for frame, i in zip(result.frames, index)])
    assert 0 < changed[0.2] < 0.7 * changed[0.0]


def test_the_front_ends_blas_runs_on_one_thread():
    from threadpoolctl import threadpool_info, threadpool_limits

    from memface_hub.pipeline import one_blas_thread

    blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    if not blas:
        pytest.skip("numpy here uses no BLAS library threadpoolctl can see")
    with threadpool_limits(limits=2, user_api="blas"):         # as on a machine with cores to spare
        assert any(pool["num_threads"] > 1 for pool in threadpool_info() if pool["user_api"] == "blas")
        with one_blas_thread():
            assert all(pool["num_threads"] == 1 for pool in threadpool_info() if pool["user_api"] == "blas")


def test_the_speakers_articulation_gain_scales_the_predicted_expressions(pipe, speaker):
    """memface adapt stores how much wider the speaker's lips move than the shared a2e predicts; generation
    scales the expressions by it, only with the a2e model it was measured with, live streams too."""
    from dataclasses import replace

    from memface_hub.a2e import a2e_fingerprint

    speech = (tone(1.0) * (0.5 + 0.5 * np.sin(np.arange(16_000) / 800.0))).astype(np.float32)

    def expressions(spk, live=False):
        source = iter([speech[i:i + 640] for i in range(0, len(speech), 640)]) if live else speech
        return np.concatenate([e for _, e, _, _ in pipe.stream(source, spk, sampling_rate=16_000, progress=False)])

    base = expressions(speaker)
    gained = replace(speaker, meta={**speaker.meta, "articulation": {"gain": 1.4, "a2e": a2e_fingerprint(pipe.a2e)}})
    np.testing.assert_allclose(expressions(gained), 1.4 * base, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(expressions(gained, live=True), 1.4 * expressions(speaker, live=True), rtol=1e-4,
                               atol=1e-6)
    other = replace(speaker, meta={**speaker.meta, "articulation": {"gain": 1.4, "a2e": "0" * 16}})
    np.testing.assert_array_equal(expressions(other), base)            # measured with another a2e: not applied
    pipe.articulation = False
    try:
        np.testing.assert_array_equal(expressions(gained), base)
    finally:
        pipe.articulation = True


def test_articulation_gain_is_the_rms_ratio_of_the_openings_and_a_bad_one_is_refused(speaker, tmp_path):
    import json
    import shutil

    from memface_hub.training.adapt_a2e import GAIN_RANGE, gain_from_openings

    predicted = np.abs(np.sin(np.arange(100) / 5.0)) * 0.05 + 0.01
    assert gain_from_openings(0.01 + 1.3 * (predicted - 0.01), predicted, 0.01) == pytest.approx(1.3)
    assert gain_from_openings(0.01 + 5 * (predicted - 0.01), predicted, 0.01) == GAIN_RANGE[1]
    assert gain_from_openings(predicted, np.full(100, 0.01), 0.01) == 1.0           # nothing predicted to scale
    folder = shutil.copytree(speaker.template_path.parent, tmp_path / "speaker")
    meta = json.loads((folder / "speaker.json").read_text())
    for bad in ({"gain": 9.0, "a2e": "0" * 16}, {"gain": 1.2}, {"gain": 1.2, "a2e": "../x"}, [1.2]):
        (folder / "speaker.json").write_text(json.dumps({**meta, "articulation": bad}))
        with pytest.raises(MemFaceInputError, match="articulation"):
            SpeakerMemory.from_pretrained(folder)
    (folder / "speaker.json").write_text(json.dumps({**meta, "articulation": {"gain": 1.2, "a2e": "0a" * 8}}))
    assert SpeakerMemory.from_pretrained(folder).meta["articulation"]["gain"] == 1.2
