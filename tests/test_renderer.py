"""MemFaceRenderer: shapes, compositing, the explicit-memory read and its leakage mask, strict loading."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import run_cli_under_accelerate
from memface_hub.arrays_io import save_arrays
from memface_hub.errors import MemFaceInputError
from memface_hub.renderer import MemFaceRenderer, PatchDiscriminator, apply_renderer_delta, renderer_delta

SMALL = dict(crop_size=64, base_channels=8, depth=2, memory_dim=16, value_channels=8, implicit_slots=12)


def _inputs(renderer, batch=2, entries=10, seed=0):
    generator = torch.Generator().manual_seed(seed)
    size = renderer.crop_size
    top, bottom, left, right = renderer.patch_box
    template, sketch = torch.rand(batch, 3, size, size, generator=generator), torch.rand(batch, 3, size, size,
                                                                                         generator=generator)
    vertices = torch.randn(batch, 102, 3, generator=generator)
    keys = torch.randn(entries, 102, 3, generator=generator)
    patches = torch.rand(entries, 3, bottom - top, right - left, generator=generator)
    return template, sketch, vertices, keys, patches


@pytest.mark.parametrize("memory", ["explicit", "none", "implicit"])
def test_output_changes_only_the_mouth_box(memory):
    torch.manual_seed(0)
    renderer = MemFaceRenderer(memory=memory, **SMALL)
    template, sketch, vertices, keys, patches = _inputs(renderer)
    kwargs = {}
    if memory == "explicit":
        kwargs = renderer.memory_inputs(keys, patches)
    output = renderer(template, sketch, vertices, **kwargs)
    assert output.image.shape == template.shape and output.raw.shape == template.shape
    outside = (renderer.mouth_mask == 0).expand_as(template)
    assert torch.equal(output.image[outside], template[outside])
    top, bottom, left, right = renderer.patch_box
    centre = (slice(None), slice(None), slice((top + bottom) // 2 - 1, (top + bottom) // 2 + 1),
              slice((left + right) // 2 - 1, (left + right) // 2 + 1))
    assert not torch.allclose(output.image[centre], template[centre])
    if memory == "none":
        assert output.memory_attention is None
    else:
        torch.testing.assert_close(output.memory_attention.sum(-1), torch.ones(2))


def test_the_template_mouth_is_hidden_from_the_network():
    torch.manual_seed(0)
    renderer = MemFaceRenderer(memory="none", **SMALL).eval()
    template, sketch, vertices, _, _ = _inputs(renderer)
    changed = template.clone()
    top, bottom, left, right = renderer.patch_box
    changed[:, :, top:bottom, left:right] = torch.rand_like(changed[:, :, top:bottom, left:right])
    torch.testing.assert_close(renderer(template, sketch, vertices).raw, renderer(changed, sketch, vertices).raw)


def test_explicit_memory_read_follows_the_query_and_respects_exclusion():
    torch.manual_seed(0)
    renderer = MemFaceRenderer(memory="explicit", **SMALL).eval()
    template, sketch, _, keys, patches = _inputs(renderer, batch=1)
    memory = renderer.encode(keys, patches)
    # Sharpen the attention so the nearest key wins: query = key 3.
    with torch.no_grad():
        renderer.reader.query_proj.weight.copy_(torch.eye(16, 306) * 50)
        renderer.reader.key_proj.weight.copy_(torch.eye(16, 306) * 50)
    output = renderer(template, sketch, keys[3:4], memory=memory)
    assert output.memory_attention.argmax(-1).item() == 3
    exclude = torch.zeros(1, 10, dtype=torch.bool)
    exclude[0, 2:5] = True  # the leakage rule: a frame never reads its own entry or ±2 neighbours
    excluded = renderer(template, sketch, keys[3:4], memory=memory, exclude=exclude)
    assert excluded.memory_attention[0, 2:5].sum().item() == 0
    other_patches = torch.rand_like(patches)
    other = renderer(template, sketch, keys[3:4],
                     memory=replace(memory, values=renderer.encode_memory(other_patches)))
    assert not torch.allclose(other.raw, output.raw)  # the encoded memory values matter
    retrieved = renderer(template, sketch, keys[3:4],
                         memory=replace(memory, patches=renderer.normalise_patches(other_patches)))
    assert not torch.allclose(retrieved.raw, output.raw)  # and so does the retrieved mouth image
    with pytest.raises(ValueError, match="patches too"):
        renderer(template, sketch, keys[3:4], memory=replace(memory, patches=None))
    with pytest.raises(ValueError, match="needs a memory"):
        renderer(template, sketch, keys[3:4])
    # a subset of the entries is a memory too (training reads a random subset per step)
    subset = memory.take(torch.tensor([1, 3, 5]))
    assert len(subset) == 3
    assert renderer(template, sketch, keys[3:4], memory=subset).memory_attention.argmax().item() == 1


def test_mouth_window_renders_only_around_the_mouth_box():
    torch.manual_seed(0)
    renderer = MemFaceRenderer(memory="explicit", mouth_window=True, **{**SMALL, "crop_size": 128}).eval()
    top, bottom, left, right = renderer.window
    box = renderer.patch_box
    assert (bottom - top) * (right - left) < 0.75 * 128 ** 2                   # fewer pixels than the crop
    assert top <= box[0] and bottom >= box[1] and left <= box[2] and right >= box[3]
    assert renderer.ring_mask[..., top:bottom, left:right].sum() == renderer.ring_mask.sum()  # the ring is inside
    template, sketch, vertices, keys, patches = _inputs(renderer)
    memory = renderer.memory_inputs(keys, patches)
    output = renderer(template, sketch, vertices, **memory)
    assert output.image.shape == template.shape
    outside = (renderer.mouth_mask == 0).expand_as(template)
    assert torch.equal(output.image[outside], template[outside])
    # the network never looks outside its window: changing pixels there changes nothing
    changed = template.clone()
    changed[:, :, :top] = torch.rand_like(changed[:, :, :top])
    torch.testing.assert_close(renderer(changed, sketch, vertices, **memory).image[..., top:bottom, left:right],
                               output.image[..., top:bottom, left:right])


def test_distance_prior_reads_the_memory_entries_of_the_nearest_mouth_shape():
    torch.manual_seed(0)
    plain = MemFaceRenderer(memory="explicit", **SMALL).eval()
    prior = MemFaceRenderer(memory="explicit", memory_distance_prior=50.0, **SMALL).eval()
    prior.load_state_dict(plain.state_dict())
    template, sketch, _, keys, patches = _inputs(plain, batch=1)
    query = keys[6:7] + 0.01 * torch.randn_like(keys[6:7])
    read_plain = plain(template, sketch, query, **plain.memory_inputs(keys, patches)).memory_attention
    read_prior = prior(template, sketch, query, **prior.memory_inputs(keys, patches)).memory_attention
    assert read_prior.argmax(-1).item() == 6 and read_prior[0, 6] > 0.9
    assert read_plain[0, 6] < 0.5                               # untrained learned attention alone is near flat
    exclude = torch.zeros(1, 10, dtype=torch.bool)
    exclude[0, 6] = True                                        # the leakage rule still holds
    excluded = prior(template, sketch, query, **prior.memory_inputs(keys, patches, exclude)).memory_attention
    assert excluded[0, 6].item() == 0


def test_a_stored_delta_reproduces_the_tuned_renderer(tmp_path):
    """What adaptation stores is the float16 change of the decoder's weights: added to the shared renderer it
    gives the tuned renderer's weights and output (to float16 rounding), far from the shared renderer's."""
    from memface_hub.training.adapt import FINETUNED_MODULES

    torch.manual_seed(0)
    base = MemFaceRenderer(memory="none", **SMALL).eval()
    tuned = copy.deepcopy(base)
    with torch.no_grad():
        for name, parameter in tuned.named_parameters():
            if name.split(".")[0] in FINETUNED_MODULES:
                parameter.add_((0.1 * parameter.abs().mean() + 0.01) * torch.randn_like(parameter))
    delta = renderer_delta(base, tuned)
    decoder = {name for name, _ in tuned.named_parameters() if name.split(".")[0] in FINETUNED_MODULES}
    assert set(delta) == decoder and all(change.dtype == np.float16 for change in delta.values())
    save_arrays(tmp_path / "renderer_delta.safetensors", delta)
    applied = apply_renderer_delta(copy.deepcopy(base), tmp_path / "renderer_delta.safetensors")
    tuned_state = tuned.state_dict()
    for name, value in applied.state_dict().items():
        torch.testing.assert_close(value, tuned_state[name], rtol=0, atol=1e-4)
    template, sketch, vertices, _, _ = _inputs(base)
    with torch.no_grad():
        base_output, tuned_output, applied_output = (model(template, sketch, vertices).image
                                                     for model in (base, tuned, applied))
    reproduction_error = (applied_output - tuned_output).abs().max().item()
    assert reproduction_error < 1e-3
    assert (tuned_output - base_output).abs().max().item() > 100 * max(reproduction_error, 1e-6)


def test_strict_round_trip(tmp_path):
    renderer = MemFaceRenderer(memory="explicit", **SMALL).eval()
    renderer.save_pretrained(tmp_path / "r")
    loaded = MemFaceRenderer.from_pretrained(tmp_path / "r")
    template, sketch, vertices, keys, patches = _inputs(renderer)
    torch.testing.assert_close(
        loaded(template, sketch, vertices, **loaded.memory_inputs(keys, patches)).image,
        renderer(template, sketch, vertices, **renderer.memory_inputs(keys, patches)).image)
    with pytest.raises(MemFaceInputError, match="missing keys"):
        MemFaceRenderer.from_pretrained(tmp_path / "r", memory="none", **{k: v for k, v in SMALL.items()})


def test_bad_config_and_discriminator_shape():
    with pytest.raises(ValueError, match="memory must be one of"):
        MemFaceRenderer(memory="episodic")
    with pytest.raises(ValueError, match="divisible"):
        MemFaceRenderer(crop_size=100, depth=4)
    logits = PatchDiscriminator(16)(torch.rand(2, 3, 48, 64))
    assert logits.shape == (2, 1, 6, 8)


@pytest.mark.slow
def test_renderer_training_data_and_loop(tiny_shards, tiny_corpus, tmp_path):
    """Leakage rule in the data, then one short training epoch end to end."""
    import json

    import numpy as np

    from memface_hub.data.renderer_frames import LEAKAGE_FRAMES, RendererFrames
    from memface_hub.training.train_renderer import RendererTrainingConfig, train_renderer

    corpus_root, index = tiny_corpus
    frames = RendererFrames([tiny_shards / index["clips"][0]["clip_id"]], crop_size=64, frame_step=1)
    bank = frames.build_memory(12)
    assert bank.keys.shape == (12, 102, 3) and bank.patches.dtype == np.uint8
    entry = 5
    own = int(np.flatnonzero(frames.frames == bank.frames[entry])[0])
    item = frames[own]
    assert item["exclude"][entry]  # a frame never reads its own entry …
    near = (np.abs(bank.frames - bank.frames[entry]) <= LEAKAGE_FRAMES)
    assert item["exclude"].numpy().sum() == near.sum()  # … nor its ±2 neighbours, and nothing else
    assert item["target"].shape == (3, 64, 64) and item["sketch"].max() > 0

    best = train_renderer(RendererTrainingConfig(
        shards=str(tiny_shards), output_dir=str(tmp_path / "run"), splits=str(corpus_root / "corpus.json"),
        crop_size=64, base_channels=8, depth=2, memory_entries=16, frame_step=6, epochs=1, batch_size=4,
        progress=False))
    state = json.loads((tmp_path / "run" / "trainer_state.json").read_text())
    assert state["epoch"] == 1 and state["best_val_psnr"] > 10 and state["train_images_per_s"] > 0
    assert (tmp_path / "run" / "val_epoch_001.png").exists()
    assert MemFaceRenderer.from_pretrained(best).memory_kind == "explicit"


@pytest.mark.slow
def test_renderer_training_runs_under_accelerate_with_two_processes(tiny_shards, tiny_corpus, tmp_path):
    import json

    corpus_root, _ = tiny_corpus
    run_cli_under_accelerate("train-renderer", "--shards", str(tiny_shards), "--out", str(tmp_path / "ddp"),
                             "--splits", str(corpus_root / "corpus.json"), "--crop-size", "64", "--entries", "16",
                             "--frame-step", "6", "--batch-size", "2", "--max-steps", "2")
    state = json.loads((tmp_path / "ddp" / "trainer_state.json").read_text())
    assert state["step"] == 2 and state["epoch"] >= 1 and state["best_val_psnr"] > 5
    assert MemFaceRenderer.from_pretrained(tmp_path / "ddp" / "best").crop_size == 64


def test_colour_comes_from_the_inputs():
    """With colour normalisation the renderer paints in the template's colour units: a change of
    brightness and of white balance (a gain, an offset per channel) applied to the template and to the
    memory is applied alike to the output (the old sigmoid renderer, which painted the colours it was
    trained on, fails this)."""
    torch.manual_seed(0)
    renderer = MemFaceRenderer(memory="explicit", **SMALL).eval()
    template, sketch, vertices, keys, patches = _inputs(renderer, entries=6)
    template, patches = 0.3 + 0.4 * template, 0.3 + 0.4 * patches          # room to move inside [0, 1]
    gain, offset = torch.tensor(0.8), torch.tensor([0.05, -0.08, 0.02]).view(1, 3, 1, 1)
    with torch.no_grad():
        base = renderer(template, sketch, vertices, **renderer.memory_inputs(keys, patches)).raw
        moved = renderer(template * gain + offset, sketch, vertices,
                         **renderer.memory_inputs(keys, patches * gain + offset)).raw
    inside = (base > 0.01) & (base < 0.99) & (moved > 0.01) & (moved < 0.99)
    assert inside.float().mean() > 0.9
    torch.testing.assert_close(moved[inside], (base * gain + offset).expand_as(base)[inside], atol=1e-4, rtol=1e-4)
    plain = MemFaceRenderer(memory="explicit", colour_normalise=False, **SMALL).eval()
    with torch.no_grad():
        base = plain(template, sketch, vertices, **plain.memory_inputs(keys, patches)).raw
        moved_memory = plain.memory_inputs(keys, patches * gain + offset)
        moved = plain(template * gain + offset, sketch, vertices, **moved_memory).raw
    assert not torch.allclose(moved, base * gain + offset, atol=1e-2)


def test_seam_matching_removes_a_colour_step_at_the_blend():
    torch.manual_seed(0)
    renderer = MemFaceRenderer(memory="none", **SMALL).eval()
    template, sketch, vertices, _, _ = _inputs(renderer, batch=1)
    with torch.no_grad():
        renderer.out.bias.fill_(1.5)                               # an output far off the template's colour
        plain = renderer(template, sketch, vertices).raw
        matched = renderer(template, sketch, vertices, match_seam=True).raw
    band = renderer.seam_band
    step = lambda raw: float(((raw - template) * band).sum() / (band.sum() * 3))  # noqa: E731
    assert abs(step(plain)) > 0.05
    assert abs(step(matched)) < 0.01


def test_person_batches_come_from_one_person_and_follow_the_weights(tiny_shards, tiny_corpus):
    from memface_hub.data.renderer_frames import PeopleFrames, PersonBatchSampler

    _, index = tiny_corpus
    clips = [tiny_shards / clip["clip_id"] for clip in index["clips"]]
    people = PeopleFrames({"a": clips[:1], "b": clips[1:2], "c": clips[2:]}, crop_size=64, frame_step=4)
    banks = people.build_memories(8)
    assert [len(bank.keys) for bank in banks] == [min(8, len(part)) for part in people.parts]
    sampler = PersonBatchSampler(people, batch_size=4, weights=[1.0, 0.0, 1.0], num_batches=40, seed=1)
    drawn = set()
    for batch in sampler:
        persons = {int(people[i]["person"]) for i in batch}
        assert len(persons) == 1 and len(batch) == 4
        drawn |= persons
    assert drawn == {0, 2}                                         # the zero-weight person never comes up
    in_bank = int(list(people.parts[0].frames).index(banks[0].frames[0]))     # a frame that is also an entry
    item = people[in_bank]
    assert item["exclude"].shape == (len(banks[0].keys),) and item["exclude"][0]   # the leakage rule applies
    with pytest.raises(ValueError):
        PersonBatchSampler(people, batch_size=4, weights=[1.0, 1.0])


def test_frames_split_into_an_adaptation_part_and_a_test_part(tiny_shards, tiny_corpus):
    from memface_hub.data.renderer_frames import RendererFrames

    _, index = tiny_corpus
    frames = RendererFrames([tiny_shards / index["clips"][0]["clip_id"]], crop_size=64, frame_step=1)
    frames.build_memory(6)
    cut = int(frames.frames[len(frames) // 2])
    before, after = frames.split_at(cut)
    assert len(before) + len(after) == len(frames) and before.bank is None and after.bank is None
    assert before.frames.max() < cut <= after.frames.min()
    assert (after.crops == frames.crops[frames.frames >= cut]).all()


@pytest.mark.parametrize("edit, problem", [
    (lambda c: {**c, "crop_size": 2 ** 20}, "field 'crop_size' must be in"),
    (lambda c: {**c, "base_channels": 1e9}, "field 'base_channels' must be int"),
    (lambda c: {**c, "depth": True}, "field 'depth' must be int"),
    (lambda c: {**c, "surprise": 1}, "unknown fields"),
    (lambda c: [c], "must hold a JSON object"),
    (lambda c: "[" * 100_000 + "]" * 100_000, "a config is at most"),
    (lambda c: "[" * 5_000 + "]" * 5_000, "not valid JSON"),
    (lambda c: {**c, "crop_layout": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": 1}}}}}}}}}, "nests deeper"),
])
def test_hostile_configs_are_refused_before_anything_is_allocated(tmp_path, edit, problem):
    import json

    MemFaceRenderer(**SMALL).save_pretrained(tmp_path / "r")
    path = tmp_path / "r" / "config.json"
    edited = edit(json.loads(path.read_text()))
    path.write_text(edited if isinstance(edited, str) else json.dumps(edited))
    with pytest.raises(MemFaceInputError, match=problem) as info:
        MemFaceRenderer.from_pretrained(tmp_path / "r")
    assert "config.json" in str(info.value) and "\n" not in str(info.value)


def test_renderers_of_different_crop_sizes_are_measured_at_one_resolution(tiny_shards, tiny_corpus):
    """``evaluate_renderer(reference=)``: a crop-64 output is upscaled and compared with the crop-128 truth.
    A renderer that returns its target exactly (a stand-in for a perfect one) is perfect at its own size, and
    at 128 it has lost the detail the 64 crop could not hold: lower PSNR, a softer mouth."""
    from types import SimpleNamespace

    from memface_hub.data.renderer_frames import RendererFrames
    from memface_hub.evaluation.perceptual import PerceptualMetric
    from memface_hub.evaluation.renderer_eval import evaluate_renderer

    class Perfect(torch.nn.Module):
        def __init__(self, size):
            super().__init__()
            self.crop_layout = MemFaceRenderer(crop_size=size, base_channels=4, depth=1).crop_layout

        def forward(self, target, sketch, vertices, **memory):
            return SimpleNamespace(image=target)

    _, index = tiny_corpus
    shard = tiny_shards / index["clips"][0]["clip_id"]
    small, large = (RendererFrames([shard], crop_size=size, frame_step=8) for size in (64, 128))
    perceptual = PerceptualMetric()
    own = evaluate_renderer(Perfect(64), small, {}, perceptual)
    at_128 = evaluate_renderer(Perfect(64), small, {}, perceptual, reference=large)
    assert own["psnr_mouth"] > 60 and abs(own["sharpness_ratio"] - 1) < 1e-6
    assert at_128["psnr_mouth"] < 45 and at_128["sharpness_ratio"] < 0.8 and at_128["perceptual"] > own["perceptual"]
    assert at_128["frames"] == own["frames"] == len(large)
