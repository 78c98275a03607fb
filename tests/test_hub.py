"""Speaker memories on the Hub, through the real ``huggingface_hub`` client and the test Hub
(tests/hub_server.py): push → card → list → load by repo id, privacy, offline cache, refusals."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import numpy as np
import pytest
from huggingface_hub import HfApi, ModelCard

from conftest import REPO_ROOT, write_video
from memface_hub import cards
from memface_hub.arrays_io import load_arrays, save_arrays
from memface_hub.errors import MemFaceInputError
from memface_hub.face.crop import CropLayout
from memface_hub.face.landmarks import MOUTH_VERTICES
from memface_hub.io import read_frames
from memface_hub.speaker import DELTA_FILE, SPEAKER_FORMAT, SPEAKER_FORMAT_VERSION, SpeakerMemory, list_speakers

TERMS = {"license": "cc-by-nc-4.0", "consent": "The person shown agreed in writing to this memory being shared "
                                               "for research on talking-face generation."}
ARRAYS = ("keys", "values", "neutral", "frame_indices", "poses", "crop_affines")


@pytest.fixture(scope="module")
def speaker(tmp_path_factory) -> SpeakerMemory:
    """A tiny synthetic speaker memory (8 entries, 6 template frames, 64-px crops) that passes every check
    of the folder loader; built in a blink (building one from the demo corpus takes about a minute)."""
    rng = np.random.default_rng(0)
    layout = CropLayout(size=64)
    top, bottom, left, right = layout.mouth_box()
    entries, frames, vertices = 8, 6, len(MOUTH_VERTICES)
    clip = write_video(tmp_path_factory.mktemp("clip") / "clip.mp4",
                       [rng.integers(0, 256, (64, 64, 3), np.uint8) for _ in range(frames)])
    meta = {"format": SPEAKER_FORMAT, "format_version": SPEAKER_FORMAT_VERSION, "name": "synthetic-speaker",
            "fps": 25.0, "crop_layout": asdict(layout), "patch_box": [top, bottom, left, right],
            "num_entries": entries, "num_template_frames": frames, "source_sha256": "0" * 64,
            "landmarker": "synthetic", "num_mouth_vertices": vertices}
    return SpeakerMemory(keys=rng.normal(size=(entries, vertices, 3)).astype(np.float32),
                         values=rng.integers(0, 256, (entries, 3, bottom - top, right - left), np.uint8),
                         neutral=rng.normal(size=(vertices, 3)).astype(np.float32),
                         frame_indices=np.arange(entries, dtype=np.int64) % frames,
                         poses=rng.normal(size=(frames, 13)).astype(np.float32),
                         crop_affines=rng.normal(size=(frames, 2, 3)).astype(np.float32), meta=meta, template_path=clip)


def assert_same_speaker(loaded: SpeakerMemory, original: SpeakerMemory) -> None:
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(loaded, name), getattr(original, name), err_msg=name)
    assert loaded.meta == original.meta
    assert len(read_frames(loaded.template_path)) == len(original.poses)


def test_push_then_load_by_repo_id(speaker, hub_env):
    repo_id = hub_env.repo_id("astronaut")
    template = speaker.template_path
    url = speaker.push_to_hub(repo_id, **TERMS)
    assert url == f"{hub_env.endpoint}/{repo_id}"
    assert speaker.template_path == template                 # pushing leaves the object as it was
    files = set(HfApi().list_repo_files(repo_id))
    assert files == {".gitattributes", "README.md", "speaker.json", "memory.safetensors", "tracks.safetensors",
                     "template.mp4"}
    loaded = SpeakerMemory.from_pretrained(repo_id)
    assert_same_speaker(loaded, speaker)
    assert hub_env.cache_dir in loaded.template_path.parents   # downloaded into the Hub cache


def test_a_renderer_delta_travels_with_the_memory(speaker, hub_env, tmp_path):
    folder = replace(speaker).save_pretrained(tmp_path / "speaker")   # a copy: the fixture stays as it is
    save_arrays(folder / DELTA_FILE, {"conv.weight": np.ones((2, 2), np.float32)})
    repo_id = hub_env.repo_id("adapted")
    SpeakerMemory.from_pretrained(folder).push_to_hub(repo_id, **TERMS)
    loaded = SpeakerMemory.from_pretrained(repo_id)
    np.testing.assert_array_equal(load_arrays(loaded.template_path.parent / DELTA_FILE)["conv.weight"], 1.0)


def test_a_commit_sha_loads_that_version(speaker, hub_env):
    repo_id = hub_env.repo_id("versions")
    speaker.push_to_hub(repo_id, **TERMS)
    first = HfApi().model_info(repo_id).sha
    renamed = replace(speaker, meta={**speaker.meta, "name": "renamed"})
    renamed.push_to_hub(repo_id, **TERMS, commit_message="rename")
    assert SpeakerMemory.from_pretrained(repo_id).meta["name"] == "renamed"
    assert SpeakerMemory.from_pretrained(repo_id, revision=first).meta["name"] == "synthetic-speaker"


def test_card_has_the_required_metadata(speaker, hub_env):
    repo_id = hub_env.repo_id("carded")
    pipeline = f"{hub_env.user}/memface-pipeline"
    speaker.push_to_hub(repo_id, **TERMS, base_model=pipeline, source_description="A synthetic test clip.")
    card = ModelCard.load(repo_id)
    assert card.data.library_name == "memface_hub"
    assert {"memface-speaker", "memface", "talking-face", "synthetic-media"} <= set(card.data.tags)
    assert card.data.base_model == pipeline and card.data.base_model_relation == "adapter"
    assert card.data.license == TERMS["license"] and card.data.consent == TERMS["consent"]
    for text in (TERMS["consent"], "A synthetic test clip.", "## Synthetic media", f'from_pretrained("{repo_id}")',
                 "**Memory entries:** 8", "6 frames at 25 fps"):
        assert text in card.text, text
    assert "$" not in card.content                            # every placeholder filled
    assert "memface-speaker" in HfApi().model_info(repo_id).tags


def test_card_templates_ship_with_the_package(monkeypatch, tmp_path):
    templates = sorted((REPO_ROOT / "model_cards").glob("*_card.md"))
    assert "speaker_card.md" in [path.name for path in templates]
    for path in templates:   # wheels ship memface_hub/card_templates/, which must be an exact copy
        assert (REPO_ROOT / "memface_hub" / "card_templates" / path.name).read_bytes() == path.read_bytes(), \
            f"copy model_cards/{path.name} to memface_hub/card_templates/"
    monkeypatch.setattr(cards, "REPO_TEMPLATES", tmp_path / "no_checkout")   # as in an installed wheel
    assert cards.card_template("speaker_card.md") == (REPO_ROOT / "model_cards" / "speaker_card.md").read_text()


def test_list_speakers_finds_tagged_repos(speaker, hub_env):
    mine = hub_env.repo_id("listed")
    speaker.push_to_hub(mine, **TERMS)
    unrelated = hub_env.repo_id("not-a-speaker")
    api = HfApi()
    api.create_repo(unrelated)
    api.upload_file(repo_id=unrelated, path_or_fileobj=b"---\nlibrary_name: memface_hub\ntags: [memface]\n---\n",
                    path_in_repo="README.md")
    theirs = f"{hub_env.server.other_user}/their-speaker"
    speaker.push_to_hub(theirs, **TERMS, private=False, token=hub_env.server.other_token)

    found = {listing.repo_id: listing for listing in list_speakers(author=hub_env.user)}
    assert mine in found and unrelated not in found and theirs not in found
    assert found[mine].author == hub_env.user and found[mine].license == TERMS["license"]
    assert theirs in {listing.repo_id for listing in list_speakers()}


def test_a_private_speaker_needs_its_owner_token(speaker, hub_env):
    repo_id = hub_env.repo_id("private")
    speaker.push_to_hub(repo_id, **TERMS, private=True)
    assert_same_speaker(SpeakerMemory.from_pretrained(repo_id), speaker)     # the owner's token (HF_TOKEN)
    for token in (hub_env.server.other_token, False):                        # someone else; anonymous
        with pytest.raises(MemFaceInputError, match="no such speaker memory on the Hub") as info:
            SpeakerMemory.from_pretrained(repo_id, token=token)
        assert str(info.value).startswith(f"{repo_id}: ") and "\n" not in str(info.value)
        assert repo_id not in {listing.repo_id for listing in list_speakers(token=token)}
    assert repo_id in {listing.repo_id for listing in list_speakers(author=hub_env.user)}


def test_a_fresh_process_configured_by_environment_loads_online_then_offline(speaker, hub_env):
    repo_id = hub_env.repo_id("cached")
    speaker.push_to_hub(repo_id, **TERMS)
    script = """
import json, os
from memface_hub.errors import MemFaceInputError
from memface_hub.speaker import SpeakerMemory
memory = SpeakerMemory.from_pretrained(os.environ["SPEAKER_REPO"])
error = None
if "MISSING_REPO" in os.environ:
    try:
        SpeakerMemory.from_pretrained(os.environ["MISSING_REPO"])
    except MemFaceInputError as err:
        error = str(err)
print(json.dumps({"values_sum": int(memory.values.sum()), "name": memory.meta["name"],
                  "template": str(memory.template_path), "error": error}))
"""
    # 1. online, HF_ENDPOINT & co set before huggingface_hub is imported: fills the cache
    online = hub_env.run_python(script, SPEAKER_REPO=repo_id)
    assert online.returncode == 0, online.stderr
    assert json.loads(online.stdout.splitlines()[-1])["name"] == "synthetic-speaker"
    # 2. offline: the cached repo loads without a single request; one never downloaded is a clear error
    requests_before = len(hub_env.server.log)
    missing = hub_env.repo_id("never-downloaded")
    offline = hub_env.run_python(script, SPEAKER_REPO=repo_id, MISSING_REPO=missing, HF_HUB_OFFLINE="1")
    assert offline.returncode == 0, offline.stderr
    result = json.loads(offline.stdout.splitlines()[-1])
    assert result["values_sum"] == int(speaker.values.sum()) and result["name"] == "synthetic-speaker"
    assert result["template"].startswith(str(hub_env.cache_dir))
    assert result["error"].startswith(f"{missing}: ") and "offline" in result["error"]
    assert len(hub_env.server.log) == requests_before


def test_a_repo_with_pickle_files_is_refused_before_any_download(speaker, hub_env):
    repo_id = hub_env.repo_id("pickled")
    speaker.push_to_hub(repo_id, **TERMS)
    HfApi().upload_file(repo_id=repo_id, path_or_fileobj=b"\x80\x04\x95 not really a pickle",
                        path_in_repo="pytorch_model.bin")
    requests_before = len(hub_env.server.log)
    with pytest.raises(MemFaceInputError) as info:
        SpeakerMemory.from_pretrained(repo_id)
    assert str(info.value).startswith(f"{repo_id}: repo carries pickle-capable files ['pytorch_model.bin']")
    assert "\n" not in str(info.value)
    assert not [line for line in hub_env.server.log[requests_before:] if "/resolve/" in line]   # nothing fetched


def test_a_repo_that_is_not_a_speaker_memory_is_refused(hub_env):
    repo_id = hub_env.repo_id("some-model")
    api = HfApi()
    api.create_repo(repo_id)
    api.upload_file(repo_id=repo_id, path_or_fileobj=b"{}", path_in_repo="config.json")
    with pytest.raises(MemFaceInputError, match=r"not a speaker memory \(no speaker.json in the repo\)") as info:
        SpeakerMemory.from_pretrained(repo_id)
    assert str(info.value).startswith(f"{repo_id}: ")
    with pytest.raises(MemFaceInputError, match="no such speaker memory on the Hub"):
        SpeakerMemory.from_pretrained(hub_env.repo_id("does-not-exist"))


@pytest.mark.parametrize("name, damage", [("values", lambda values: values.astype(np.float32)),   # wrong dtype
                                         ("keys", lambda keys: keys[:, :10])])                      # wrong shape
def test_malformed_tensors_on_the_hub_are_refused(speaker, hub_env, tmp_path, name, damage):
    repo_id = hub_env.repo_id("malformed")
    speaker.push_to_hub(repo_id, **TERMS)
    arrays = {key: getattr(speaker, key) for key in ("keys", "values", "neutral", "frame_indices")}
    damaged = arrays[name] = damage(arrays[name])
    save_arrays(tmp_path / "memory.safetensors", arrays)
    HfApi().upload_file(repo_id=repo_id, path_or_fileobj=tmp_path / "memory.safetensors",
                        path_in_repo="memory.safetensors")
    with pytest.raises(MemFaceInputError) as info:
        SpeakerMemory.from_pretrained(repo_id)
    expected = f"{repo_id}/memory.safetensors: array '{name}' is {damaged.shape} {damaged.dtype}, expected"
    assert str(info.value).startswith(expected) and "\n" not in str(info.value), str(info.value)


@pytest.mark.parametrize("terms, missing", [({"license": "", "consent": "yes"}, "license"),
                                            ({"license": "mit", "consent": "  "}, "consent")])
def test_push_needs_a_license_and_consent(speaker, hub_env, terms, missing):
    repo_id = hub_env.repo_id("unlicensed")
    requests_before = len(hub_env.server.log)
    with pytest.raises(MemFaceInputError, match=f"needs a non-empty {missing}") as info:
        speaker.push_to_hub(repo_id, **terms)
    assert str(info.value).startswith(f"{repo_id}: ") and "\n" not in str(info.value)
    assert len(hub_env.server.log) == requests_before            # refused before talking to the Hub


def test_speakers_are_private_by_default_gated_on_request_and_checked_before_the_repo_exists(speaker, hub_env):
    repo_id = hub_env.repo_id("likeness")
    speaker.push_to_hub(repo_id, **TERMS, gated=True)
    repo = hub_env.server.repos[("model", repo_id)]
    assert repo.private and repo.gated == "manual"
    card = HfApi().model_info(repo_id).card_data
    assert "extra_gated_prompt" in card and "Purpose of use" in card["extra_gated_fields"]
    for bad, problem in (({"license": "CC BY 4"}, "not a Hub licence identifier"),
                         ({"license": "other"}, "needs license_name and license_link")):
        refused = hub_env.repo_id("refused")
        with pytest.raises(MemFaceInputError, match=problem):
            speaker.push_to_hub(refused, **{**TERMS, **bad})
        assert ("model", refused) not in hub_env.server.repos          # nothing was created
    custom = hub_env.repo_id("custom-licence")
    speaker.push_to_hub(custom, **{**TERMS, "license": "other"}, license_name="likeness-terms",
                        license_link="https://example.org/terms", private=False)
    assert not hub_env.server.repos[("model", custom)].private


def test_a_repo_name_that_looks_like_a_token_is_refused_without_repeating_it(speaker, hub_env, caplog):
    pasted = "hf_AbCdEfGhIjKlMnOpQrStUvWxYz012345"
    for repo_id in (pasted, f"{hub_env.user}/{pasted}"):
        with pytest.raises(MemFaceInputError, match="looks like an access token") as info:
            speaker.push_to_hub(repo_id, **TERMS)
        assert pasted not in str(info.value)
    assert pasted not in caplog.text and not [key for key in hub_env.server.repos if pasted in key[1]]


def test_memface_pull_online_then_offline_from_the_cache(speaker, hub_env, tmp_path):
    import os
    import subprocess
    import sys

    repo_id = hub_env.repo_id("pulled")
    speaker.push_to_hub(repo_id, **TERMS)

    def pull(target, out, **env):
        return subprocess.run([sys.executable, "-m", "memface_hub.cli", "pull", target, "--out", str(out)],
                              env={**os.environ, **env}, capture_output=True, text=True, timeout=300)

    online = pull(repo_id, tmp_path / "online")
    assert online.returncode == 0, online.stderr[-2000:]
    assert_same_speaker(SpeakerMemory.from_pretrained(tmp_path / "online"), speaker)
    offline = pull(repo_id, tmp_path / "offline", HF_HUB_OFFLINE="1")         # the cached snapshot
    assert offline.returncode == 0, offline.stderr[-2000:]
    missing = pull(hub_env.repo_id("never-pushed"), tmp_path / "missing", HF_HUB_OFFLINE="1")
    error = missing.stderr.strip().splitlines()[-1]
    assert missing.returncode == 2 and "not in the local Hub cache" in error and "Traceback" not in missing.stderr
