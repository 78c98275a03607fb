"""Corpus v3's speaking styles: one sentence, many valid mouth motions, and a voice held out."""

from __future__ import annotations

import json

import numpy as np
import pytest

from memface_hub.data.corpus import a2e_group
from memface_hub.data.demo_corpus import build_demo_corpus, make_animator, plan_corpus
from memface_hub.data.speaking_style import (
    NEUTRAL_STYLE,
    STYLE_RANGES,
    SpeakingStyle,
    apply_style,
    draw_style,
)
from memface_hub.errors import MemFaceInputError
from memface_hub.face.landmarks import CHIN

VOICES = ("en-us", "en-gb")
HELD_OUT = ("en-us+m3",)


@pytest.fixture(scope="module")
def animator():
    return make_animator(None)


def _corner_height(animator, points, corner):
    return float((points[corner] - animator.centre) @ animator.down)


def test_styles_move_the_face_as_named(animator):
    open_mouth = np.array([0.8, 0.0, 0.0, 0.0])
    neutral = animator.moved_points(open_mouth)
    np.testing.assert_array_equal(neutral, animator.moved_points(open_mouth, style=NEUTRAL_STYLE))
    gap = lambda p: float((p[14] - p[13]) @ animator.down)                  # noqa: E731  inner-lip gap
    chin = lambda p: float((p[CHIN] - animator.centre) @ animator.down)     # noqa: E731
    jaw = animator.moved_points(open_mouth, style=SpeakingStyle(jaw_share=0.9))
    lips = animator.moved_points(open_mouth, style=SpeakingStyle(jaw_share=0.1))
    assert chin(jaw) > chin(neutral) > chin(lips)
    assert gap(lips) > gap(neutral) > gap(jaw)
    # a resting smile lifts both corners (61, 291) and widens the mouth, with the lips shut
    rest = np.zeros(4)
    plain, smile = animator.moved_points(rest), animator.moved_points(rest, style=SpeakingStyle(smile=0.8))
    for corner in (61, 291):
        assert _corner_height(animator, smile, corner) < _corner_height(animator, plain, corner) - 0.005 * animator.unit
    width = lambda p: float(np.linalg.norm(p[291] - p[61]))               # noqa: E731
    assert width(smile) > width(plain)
    # asymmetry: one corner moves more than the other
    lopsided = animator.moved_points(open_mouth, style=SpeakingStyle(asymmetry=0.8))
    drops = [_corner_height(animator, lopsided, c) - _corner_height(animator, animator.rest, c) for c in (61, 291)]
    symmetric = [_corner_height(animator, neutral, c) - _corner_height(animator, animator.rest, c) for c in (61, 291)]
    assert abs(drops[0] - drops[1]) > abs(symmetric[0] - symmetric[1]) + 0.1 * animator.unit


def test_apply_style_scales_opening_rounding_spreading_but_never_closure():
    channels = np.array([[0.5, 0.4, 0.3, 0.0], [0.9, 0.0, 0.0, 1.0]], np.float32)
    styled = apply_style(channels, SpeakingStyle(amplitude=1.2, rounding=0.5, spreading=1.5))
    np.testing.assert_allclose(styled[:, 0], [0.6, 1.08], rtol=1e-6)
    np.testing.assert_allclose(styled[:, 1:3], [[0.2, 0.45], [0.0, 0.0]], rtol=1e-6)
    np.testing.assert_array_equal(styled[:, 3], channels[:, 3])
    np.testing.assert_array_equal(apply_style(channels, NEUTRAL_STYLE), channels)
    with pytest.raises(MemFaceInputError, match="channels"):
        apply_style(channels[:, :3], NEUTRAL_STYLE)


def test_drawn_styles_stay_in_range_and_round_trip():
    rng = np.random.default_rng(0)
    styles = [draw_style(rng) for _ in range(200)]
    for name, (low, high) in STYLE_RANGES.items():
        values = np.array([getattr(s, name) for s in styles])
        assert low <= values.min() and values.max() <= high and values.std() > 0.2 * (high - low)
    assert SpeakingStyle.from_dict(styles[0].as_dict()).as_dict() == styles[0].as_dict()
    with pytest.raises(MemFaceInputError, match="jaw_share"):
        SpeakingStyle(jaw_share=1.5)
    with pytest.raises(MemFaceInputError, match="unknown fields"):
        SpeakingStyle.from_dict({"mouthiness": 1.0})


def test_styled_plans_share_sentences_across_faces_and_hold_a_voice_out():
    one = plan_corpus(minutes=3, seed=0, voices=VOICES, styles=True, style_seed=1, held_out_voices=HELD_OUT)
    two = plan_corpus(minutes=3, seed=0, voices=VOICES, styles=True, style_seed=2, held_out_voices=HELD_OUT)
    assert one == plan_corpus(minutes=3, seed=0, voices=VOICES, styles=True, style_seed=1, held_out_voices=HELD_OUT)
    # the same sentences in the same split for every face, each in its own style, rate and pitch
    shared = min(len(one), len(two))
    assert [(p.text, p.split) for p in one[:shared]] == [(p.text, p.split) for p in two[:shared]]
    assert all(a.style != b.style for a, b in zip(one[:shared], two[:shared]))
    assert len({p.pitch for p in one}) > 3 and len({p.rate for p in one}) > 3
    held_out = [p for p in one if p.held_out_voice]
    assert held_out and all(p.split == "test" and p.voice in HELD_OUT for p in held_out)
    assert not any(p.voice in HELD_OUT for p in one if not p.held_out_voice)
    assert len({p.clip_id for p in one}) == len(one)
    # without styles: corpus v2's plan, untouched
    assert all(p.style is None and p.pitch is None for p in plan_corpus(minutes=3, seed=0))


def test_a2e_groups_keep_test_sentences_voices_and_faces_out_of_training():
    assert a2e_group("train", "synthetic", "train", False) == ("train", "")
    assert a2e_group("train", "synthetic", "test", False) == ("test", "test_sentence")
    assert a2e_group("train", "synthetic", "val", False) == ("val", "")
    assert a2e_group("train", "synthetic", "test", True) == ("test", "test_voice")
    assert a2e_group("test", "synthetic", "train", False) == ("test", "test_face")
    assert a2e_group("test", "synthetic", "test", True) == ("test", "")
    assert a2e_group("test", "real", None, False) == ("test", "test_real")
    assert a2e_group("train", "real", None, False) == ("train", "")


def test_a_styled_clip_records_its_style_and_moves_differently(tmp_path):
    """Two faces' styled clips of one sentence: the timeline stores each style, and the schedules differ."""
    corpora = [build_demo_corpus(tmp_path / f"face{seed}", minutes=0.02, seed=0, voices=VOICES, styles=True,
                                 style_seed=seed, progress=False) for seed in (1, 2)]
    first = [json.loads((tmp_path / f"face{i + 1}" / corpus["clips"][0]["timeline"]).read_text())
             for i, corpus in enumerate(corpora)]
    assert corpora[0]["format_version"] == 3 and first[0]["text"] == first[1]["text"]
    assert first[0]["style"] == corpora[0]["clips"][0]["style"] != first[1]["style"]
    opening = [np.asarray(t["mouth_open"]) for t in first]
    assert opening[0].max() > 0.2 and opening[1].max() > 0.2
    count = min(map(len, opening))
    assert np.abs(opening[0][:count] - opening[1][:count]).max() > 0.05
    with pytest.raises(MemFaceInputError, match="other settings"):
        build_demo_corpus(tmp_path / "face1", minutes=0.02, seed=0, voices=VOICES, progress=False)


def test_a_corpus_built_with_other_synthetic_settings_is_refused_untouched(tmp_path):
    """Running build-corpus with other flags (e.g. styles on an old corpus) stops before rewriting its index."""
    from memface_hub.data.corpus import build_corpus

    people = tmp_path / "people.json"
    people.write_text(json.dumps({"format": "memface-real-people-split",
                                  "people": {"astro": {"split": "train", "portraits": ["astronaut"]}}}))
    out = tmp_path / "corpus"
    build_corpus(out, people_file=people, synthetic_minutes=0.02, styles=False, progress=False)
    before = (out / "corpus.json").read_bytes()
    assert json.loads(before)["clips"]
    with pytest.raises(MemFaceInputError, match="other settings"):
        build_corpus(out, people_file=people, synthetic_minutes=0.02, styles=True, progress=False)
    assert (out / "corpus.json").read_bytes() == before
