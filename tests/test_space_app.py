"""The Space, launched on 127.0.0.1 with a tiny pipeline and speaker, driven through the real gradio_client:
adapt → generate, the session's speakers, bad input answered with readable errors while the app keeps
serving, and sharing an adapted speaker on the (test) Hub with the user's own account (OAuth token)."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import tone, write_video
from memface_hub.a2e import MemFaceAudioToExpression
from memface_hub.io import read_frames
from memface_hub.io.audio import write_wav
from memface_hub.io.video import concatenate_videos, probe
from memface_hub.pipeline import MemFacePipeline
from memface_hub.renderer import MemFaceRenderer
from memface_hub.training.adapt import adapt_speaker

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
pytestmark = pytest.mark.slow

ADAPT_CLIP_SECONDS = 4.0


def build_tiny_space_assets(corpus_root: Path, clips: list[Path], out: Path) -> dict[str, Path]:
    """A tiny random pipeline folder, a few-second clip of the demo person, and a default speaker from it."""
    torch.manual_seed(0)
    a2e = MemFaceAudioToExpression(d_model=32, num_heads=2, num_encoder_layers=1, num_decoder_layers=1, ff_dim=64,
                                   memory_slots=16, memory_dim=16, frontend={"name": "mel"})
    a2e.set_mouth_model(torch.randn(16, a2e.num_mouth_vertices * 3) * 0.01)
    renderer = MemFaceRenderer(crop_size=64, base_channels=8, depth=2)
    pipeline = MemFacePipeline(a2e, renderer).save_pretrained(out / "pipeline")
    clip = concatenate_videos(clips, ADAPT_CLIP_SECONDS, out / "person.mp4")
    speaker = adapt_speaker(clip, out / "speaker", name="tiny-demo", entries=12, progress=False).speaker_dir
    return {"pipeline": pipeline, "speaker": speaker, "clip": clip}


def tiny_config(assets: dict[str, Path], work: Path, **overrides):
    import space_app

    settings = dict(model=str(assets["pipeline"]), speaker=str(assets["speaker"]), work_dir=str(work),
                    min_adapt_seconds=1.0, max_adapt_seconds=6.0, max_audio_seconds=8.0, max_file_size="3mb",
                    entries=16, finetune_seconds=0.0, finetune_steps=2, a2e_finetune_seconds=0.0, a2e_finetune_steps=2)
    settings.update(overrides)
    return space_app.SpaceConfig(**settings)


@contextlib.contextmanager
def few_threads():
    """One BLAS and one torch thread while the Space runs in this process: on a small, shared machine
    OpenBLAS's spinning threads made the numpy-heavy demo corpus and tracking 10–20× slower."""
    from threadpoolctl import threadpool_limits

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def assets(request, tmp_path_factory):
    with few_threads():
        root, index = request.getfixturevalue("tiny_corpus")      # built here, under the thread limits
        return build_tiny_space_assets(root, [root / clip["video"] for clip in index["clips"]],
                                       tmp_path_factory.mktemp("space_assets"))


@pytest.fixture(scope="module")
def app_url(assets, tmp_path_factory):
    import space_app

    with few_threads():
        space = space_app.MemFaceSpace(tiny_config(assets, tmp_path_factory.mktemp("space_work")))
        demo, url = space.launch("127.0.0.1", None, prevent_thread_lock=True, quiet=True)
        yield url
        demo.close()


def client_for(url: str, tmp_path_factory):
    from gradio_client import Client

    return Client(url, verbose=False, analytics_enabled=False,
                  download_files=str(tmp_path_factory.mktemp("client_downloads")))


def video_path(value) -> Path:
    """gradio_client gives a Video output as a path or as {"video": path, "subtitles": ...}."""
    return Path(value["video"] if isinstance(value, dict) else value)


@pytest.fixture(scope="module")
def adapted(app_url, assets, tmp_path_factory):
    """One session (client) that adapted the clip's person as "alice": (client, outputs, progress seen)."""
    from gradio_client import handle_file

    client = client_for(app_url, tmp_path_factory)
    job = client.submit(handle_file(str(assets["clip"])), "alice", True, api_name="/adapt")
    stages = []
    while not job.done():
        for unit in job.status().progress_data or []:
            if unit.desc and (not stages or stages[-1] != unit.desc):
                stages.append(unit.desc)
        time.sleep(0.02)
    return client, job.result(), stages


def test_adapt_then_generate_with_the_adapted_speaker(adapted, app_url, tmp_path, tmp_path_factory):
    from gradio_client import handle_file

    client, (sheet, summary), stages = adapted
    # progress was reported per stage, in order
    assert [stage.split()[0] for stage in stages if stage[0].isdigit()] == ["1/3", "2/3", "3/3"], stages
    # the adapted speaker: selectable in Generate, its memory shown as a contact sheet
    assert summary["speaker"] == "adapted:alice"
    assert summary["entries"] == 16 and summary["finetune_steps"] == 2
    assert summary["a2e_finetune_steps"] == 2          # the clip has speech: the a2e model was fine-tuned too
    assert abs(summary["video_seconds"] - ADAPT_CLIP_SECONDS) < 0.1
    image = cv2.imread(str(sheet))
    assert image is not None and image.shape[0] > 0 and image.std() > 1
    assert client.predict(api_name="/speakers") == ["demo", "adapted:alice"]
    # another session does not see this person
    assert client_for(app_url, tmp_path_factory).predict(api_name="/speakers") == ["demo"]

    # generate from uploaded speech with the adapted speaker: a video as long as the speech, with sound
    speech = write_wav(tmp_path / "speech.wav", tone(1.6), 16_000)
    video, generation, heatmap, strip = client.predict("adapted:alice", handle_file(str(speech)), "",
                                                       api_name="/generate")
    info = probe(video_path(video))
    assert info.has_video and info.has_audio and abs(info.duration - 1.6) < 0.15
    assert generation["frames"] == 40 and generation["speaker"] == "alice"
    assert 1 <= generation["distinct_entries_read"] <= 16
    for picture in (heatmap, strip):
        assert cv2.imread(str(picture)) is not None

    # typed text, spoken by espeak-ng, with the default (demo) speaker
    video, generation, _, _ = client.predict("demo", None, "Bob and Pam met by the map.", api_name="/generate")
    assert probe(video_path(video)).duration > 1.0 and generation["speaker"] == "tiny-demo"


def test_bad_input_is_a_readable_error_and_the_app_keeps_serving(app_url, assets, tmp_path, tmp_path_factory):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    client = client_for(app_url, tmp_path_factory)
    rng = np.random.default_rng(0)
    noise = write_video(tmp_path / "noise.mp4", rng.integers(0, 256, (38, 96, 96, 3), dtype=np.uint8),
                        audio=tone(1.5))
    too_long = write_video(tmp_path / "long.mp4", [np.full((32, 32, 3), 90, np.uint8)] * 200)      # 8 s
    too_short = write_video(tmp_path / "short.mp4", [np.full((32, 32, 3), 90, np.uint8)] * 10)     # 0.4 s
    picture = tmp_path / "face.png"
    cv2.imwrite(str(picture), rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    huge = tmp_path / "huge.mp4"
    huge.write_bytes(rng.bytes(4 * 1024 * 1024))                                                  # over 3 MB

    cases = [
        ((handle_file(str(noise)), "noise", True), "/adapt", r"video 'noise\.mp4': no face found"),
        ((handle_file(str(too_long)), "long", True), "/adapt", r"'long\.mp4' is 8\.0 s long, the limit here is 6 s"),
        ((handle_file(str(too_short)), "short", True), "/adapt", r"needs 1–6 s of one person"),
        ((handle_file(str(assets["clip"])), "bob", False), "/adapt", r"consent: tick the box"),
        (("demo", handle_file(str(picture)), ""), "/generate", r"audio: 'face\.png' has no sound"),
        (("demo", None, "   "), "/generate", r"upload or record audio, or type text"),
        (("adapted:nobody", None, "Hello."), "/generate", r"no speaker 'nobody' was adapted in this session"),
        (("../../etc", None, "Hello."), "/generate", r"neither a speaker of this session nor a Hub repo id"),
        (({"name": "demo"}, None, "Hello."), "/generate", r"speaker: expected text, got a JSON dict"),
    ]
    for arguments, endpoint, message in cases:
        with pytest.raises(AppError, match=message):
            client.predict(*arguments, api_name=endpoint)
    # an upload over the size limit is refused by gradio before the app sees it
    with pytest.raises(Exception, match="(?i)maximum|size|413"):
        client.predict(handle_file(str(huge)), "huge", True, api_name="/adapt")
    assert client.predict(api_name="/speakers") == ["demo"]          # nothing half-adapted was kept
    # a raw API call naming a file on the server that it never uploaded: refused, readably, and never read
    import httpx

    secret = {"path": str(assets["clip"]), "meta": {"_type": "gradio.FileData"}}
    event = httpx.post(f"{app_url.rstrip('/')}/gradio_api/call/generate", json={"data": ["demo", secret, ""]}).json()
    with httpx.stream("GET", f"{app_url.rstrip('/')}/gradio_api/call/generate/{event['event_id']}",
                      timeout=60) as reply:
        answer = "".join(reply.iter_text())
    assert "event: error" in answer and "was not uploaded to this app" in answer, answer

    # and a good request after all that
    video, generation, _, _ = client.predict("demo", None, "Hello there.", api_name="/generate")
    assert video_path(video).is_file() and generation["frames"] > 10


def test_share_on_the_hub_with_the_users_account_then_generate_from_the_hub_id(adapted, hub_env, caplog):
    """The push runs with the visitor's own token: gradio injects it as a gr.OAuthToken, from the "Sign in with
    Hugging Face" session in the page or, for gradio_client, from Client(..., oauth_token=...)."""
    from gradio_client.exceptions import AppError
    from huggingface_hub import ModelCard

    caplog.set_level(logging.INFO)
    client, _, _ = adapted
    repo_id = hub_env.repo_id("alice")
    consent = "Alice agreed in writing to this synthetic demo."
    client.oauth_token = None                   # not signed in: a readable error, the server's HF_TOKEN is not used
    with pytest.raises(AppError, match="sign in: pushing needs your Hugging Face account"):
        client.predict("adapted:alice", repo_id, "cc-by-nc-4.0", consent, "", False, api_name="/push")
    client.oauth_token = hub_env.token
    url = client.predict("adapted:alice", repo_id, "cc-by-nc-4.0", consent, "a synthetic test person", False,
                         api_name="/push")
    assert url == f"{hub_env.endpoint}/{repo_id}"
    card = ModelCard.load(repo_id, token=hub_env.token)
    assert card.data.license == "cc-by-nc-4.0" and card.data.consent == consent
    assert consent in card.text and "a synthetic test person" in card.text
    assert "memface-speaker" in card.data.tags

    # any Hub speaker id typed into the chooser works, a wrong one is a readable error
    video, generation, _, _ = client.predict(repo_id, None, "Hello.", api_name="/generate")
    assert video_path(video).is_file() and generation["speaker"] == "alice" and generation["watermarked"]
    with pytest.raises(AppError, match=rf"{hub_env.user}/no-such-speaker: no such speaker memory on the Hub"):
        client.predict(f"{hub_env.user}/no-such-speaker", None, "Hello.", api_name="/generate")

    with pytest.raises(AppError, match="consent: required"):
        client.predict("adapted:alice", repo_id, "cc-by-nc-4.0", " ", "", False, api_name="/push")
    bad_token = "hf_not_a_real_token_1234567890"
    client.oauth_token = bad_token
    with pytest.raises(AppError) as refused:
        client.predict("adapted:alice", hub_env.repo_id("bob"), "mit", consent, "", False, api_name="/push")
    assert "the Hub refused" in str(refused.value) and bad_token not in str(refused.value)
    # a token pasted into the repo box is refused without being echoed or logged
    client.oauth_token = hub_env.token
    with pytest.raises(AppError, match="looks like an access token") as pasted:
        client.predict("adapted:alice", f"{hub_env.user}/{bad_token}", "mit", consent, "", False, api_name="/push")
    assert bad_token not in str(pasted.value)
    assert hub_env.token not in caplog.text and bad_token not in caplog.text
    client.oauth_token = None


def test_sign_in_with_hugging_face(assets, hub_env, tmp_path, monkeypatch):
    """The LoginButton is shown in a Space (SPACE_ID set) or with --login; gradio's local mock signs the user in
    as this machine's account and hands over a placeholder, which stands for that account's own token there
    only — in a Space the OAuth token is used as given."""
    import gradio as gr

    import space_app

    monkeypatch.delenv("SPACE_ID", raising=False)
    local = space_app.MemFaceSpace(tiny_config(assets, tmp_path / "local"))
    logged = space_app.MemFaceSpace(tiny_config(assets, tmp_path / "login", login=True))
    assert not local.login and logged.login
    assert not any(isinstance(block, gr.LoginButton) for block in local.blocks().blocks.values())
    assert any(isinstance(block, gr.LoginButton) for block in logged.blocks().blocks.values())

    mocked = gr.OAuthToken(token=space_app.MOCKED_OAUTH_TOKEN, scope="openid profile", expires_at=0)
    assert space_app.hub_token_of(None) is None
    assert space_app.hub_token_of(mocked) == hub_env.token                    # this machine's login (HF_TOKEN)
    assert space_app.hub_token_of(gr.OAuthToken(token="hf_oauth_abc", scope="", expires_at=0)) == "hf_oauth_abc"
    monkeypatch.setenv("SPACE_ID", "someone/memface")
    assert space_app.hub_token_of(mocked) == space_app.MOCKED_OAUTH_TOKEN     # in a Space: never the server's
    assert space_app.MemFaceSpace(tiny_config(assets, tmp_path / "space")).login


def test_flags_and_environment_configure_the_space(monkeypatch):
    import space_app

    monkeypatch.setenv("MEMFACE_SPACE_MODEL", "someone/memface-pipeline")
    monkeypatch.setenv("MEMFACE_SPACE_MAX_ADAPT_SECONDS", "30")
    config = space_app.config_from_args(space_app.build_parser().parse_args(["--speaker", "someone/voice",
                                                                             "--concurrency", "2"]))
    assert (config.model, config.speaker, config.max_adapt_seconds, config.concurrency) == \
        ("someone/memface-pipeline", "someone/voice", 30.0, 2)
    assert (config.min_adapt_seconds, config.finetune_seconds, config.entries) == (15.0, 30.0, 300)
    with pytest.raises(ValueError, match="min_adapt_seconds <= max_adapt_seconds"):
        space_app.SpaceConfig(min_adapt_seconds=20, max_adapt_seconds=10)


def test_generate_streams_the_video_while_it_is_made(assets, tmp_path, tmp_path_factory):
    import space_app

    with few_threads():
        space = space_app.MemFaceSpace(tiny_config(assets, tmp_path / "work"))
        speech = write_wav(tmp_path / "speech.wav", tone(2.6), 16_000)             # 65 frames: 3 segments
        # The generation waits after its first second of frames until the first segment has reached the page:
        # if segments only came out at the end, it would wait in vain and the whole video would be there first.
        reached_the_page, made = threading.Event(), []
        generate_to_file = space.pipeline.generate_to_file

        def held_after_one_second(*args, on_frame, **kwargs):
            def hold(frame):
                on_frame(frame)
                made.append(frame)
                if len(made) == 26:
                    reached_the_page.wait(timeout=60)
            return generate_to_file(*args, on_frame=hold, **kwargs)

        space.pipeline.generate_to_file = held_after_one_second
        outputs = []
        for value in space.generate_live("demo", str(speech), "", {}):
            if value[0] is not None and not outputs:
                assert not list((space.work / "videos").glob("*.mp4")), "a segment came after the whole video"
                reached_the_page.set()
            outputs.append(value)
        space.pipeline.generate_to_file = generate_to_file
    *segments, final = outputs
    assert len(segments) == 3 and final[0] is None
    video, summary = Path(final[1]), final[2]
    infos = [probe(segment[0]) for segment in segments]
    assert all(info.has_video and info.has_audio for info in infos)                 # each with its speech
    frames = [len(read_frames(segment[0])) for segment in segments]
    assert sum(frames) == summary["frames"] == len(read_frames(video)) == 65
    assert summary["watermarked"]
    from memface_hub.provenance import verify_video

    assert verify_video(segments[0][0]).watermark.detected                           # segments are marked too
    if space_app.can_stream_video():            # the page's route, through gradio's streamed video output
        from gradio_client import handle_file

        space.streaming = True
        demo, url = space.launch("127.0.0.1", None, prevent_thread_lock=True, quiet=True)
        try:
            job = client_for(url, tmp_path_factory).submit("demo", handle_file(str(speech)), "",
                                                           api_name="/generate_live")
            result = job.result()
            assert len(read_frames(video_path(result[1]))) == 65
        finally:
            demo.close()
