"""espeak-ng synthesis, phoneme → viseme schedule and corpus sentences (CPU, a few seconds)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from memface_hub.audio.tts import PhonemeEvent, Speech, is_pause, synthesize
from memface_hub.data.sentences import (
    GRID_ADVERBS,
    GRID_COLORS,
    GRID_COMMANDS,
    GRID_DIGITS,
    GRID_LETTERS,
    GRID_PREPOSITIONS,
    HANDWRITTEN_SENTENCES,
    NUM_GRID_SENTENCES,
    corpus_sentences,
    grid_sentences,
    split_sentences,
)
from memface_hub.data.visemes import (
    BILABIALS,
    NEUTRAL_CONSONANT,
    OPEN_VOWELS,
    REST,
    VISEMES,
    viseme_for,
    viseme_schedule,
)

FPS = 25.0


@pytest.fixture(scope="module")
def speech() -> Speech:
    return synthesize("Mom bought a map.")


def _centre_frame(event: PhonemeEvent, fps: float = FPS) -> int:
    return int(0.5 * (event.start + event.end) * fps)


# ---------------------------------------------------------------- tts


def test_synthesize_returns_audio_at_reported_rate(speech: Speech) -> None:
    assert speech.sample_rate == 22050
    assert speech.samples.dtype == np.float32 and speech.samples.ndim == 1
    assert np.abs(speech.samples).max() <= 1.0
    assert np.abs(speech.samples).max() > 0.1  # not silent
    assert speech.duration == pytest.approx(len(speech.samples) / speech.sample_rate)
    assert 0.6 < speech.duration < 2.0  # four short words at 165 wpm
    assert (speech.text, speech.voice, speech.rate) == ("Mom bought a map.", "en-us", 165)


def test_phoneme_events_are_monotonic_and_cover_the_audio(speech: Speech) -> None:
    phonemes = speech.phonemes
    symbols = [p.symbol for p in phonemes]
    assert symbols[0] == "m" and {"m", "b", "p"} <= set(symbols)
    assert not any(is_pause(s) or s.startswith(("'", ",")) for s in symbols)
    starts = np.array([p.start for p in phonemes])
    ends = np.array([p.end for p in phonemes])
    assert np.all(np.diff(starts) >= 0) and np.all(ends >= starts)
    assert np.allclose(ends[:-1], starts[1:])  # no pause inside this sentence: contiguous
    assert starts[0] < 0.05
    assert speech.duration - 0.05 < ends[-1] <= speech.duration + 1e-9


def test_phoneme_timings_match_the_audio(speech: Speech) -> None:
    """Lips closed on b/p → much quieter audio than open vowels, if the timings are right."""

    def rms(event: PhonemeEvent) -> float:
        rate = speech.sample_rate
        segment = speech.samples[int(event.start * rate) : int(event.end * rate)]
        return float(np.sqrt(np.mean(segment**2)))

    stops = [rms(p) for p in speech.phonemes if p.symbol in {"b", "p"}]
    vowels = [rms(p) for p in speech.phonemes if p.symbol in OPEN_VOWELS]
    assert stops and vowels
    assert np.median(stops) < 0.5 * np.median(vowels)


def test_word_events(speech: Speech) -> None:
    assert [w.text for w in speech.words] == ["Mom", "bought", "a", "map"]
    assert [w.number for w in speech.words] == [1, 2, 3, 4]
    for word, following in zip(speech.words, speech.words[1:]):
        assert word.start < word.end <= following.start + 1e-9
    word = speech.words[3]
    assert [p.symbol for p in speech.phonemes if word.start <= p.start < word.end] == ["m", "a", "p"]


def _pitch_hz(speech: Speech) -> float:
    """Autocorrelation F0 estimate over the longest phoneme (a vowel in these sentences)."""
    longest = max(speech.phonemes, key=lambda p: p.end - p.start)
    rate = speech.sample_rate
    segment = speech.samples[int(longest.start * rate) : int(longest.end * rate)]
    segment = segment.astype(np.float64) - segment.mean()
    autocorrelation = np.correlate(segment, segment, "full")[len(segment) - 1 :]
    shortest, longest_lag = int(speech.sample_rate / 400), int(speech.sample_rate / 60)
    return speech.sample_rate / (shortest + int(np.argmax(autocorrelation[shortest:longest_lag])))


def test_rate_pitch_and_voice_variants() -> None:
    text = "Please pass the paper."
    slow = synthesize(text, rate=120)
    fast = synthesize(text, rate=300)
    assert fast.duration < 0.7 * slow.duration
    default = synthesize(text)
    assert synthesize(text, pitch=90).voice == "en-us"
    assert _pitch_hz(synthesize(text, pitch=90)) > 1.3 * _pitch_hz(default)
    female = synthesize(text, voice="en-us+f3")
    assert female.voice == "en-us+f3" and _pitch_hz(female) > 1.5 * _pitch_hz(default)
    british = synthesize(text, voice="en-gb")
    assert british.phonemes and british.sample_rate == 22050
    # settings do not leak into the next call (espeak is not bit-exact between calls: a few samples)
    again = synthesize(text)
    assert [p.symbol for p in again.phonemes] == [p.symbol for p in default.phonemes]
    assert again.duration == pytest.approx(default.duration, abs=0.005)
    assert _pitch_hz(again) == pytest.approx(_pitch_hz(default), rel=0.1)


@pytest.mark.parametrize("voice", ["no-such-voice", "en-us+no-such-variant"])
def test_unknown_voice_raises(voice: str) -> None:
    with pytest.raises(ValueError, match=re.escape(voice)):
        synthesize("Hello there.", voice=voice)
    assert synthesize("Hello there.").phonemes  # engine still usable afterwards


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_text_raises(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"text={text!r}: is empty")):
        synthesize(text)


def test_out_of_range_rate_raises() -> None:
    with pytest.raises(ValueError, match="rate=10:"):
        synthesize("Hello.", rate=10)


# ---------------------------------------------------------------- visemes


def test_viseme_table_is_consistent() -> None:
    for symbol, viseme in VISEMES.items():
        values = (viseme.jaw_open, viseme.lip_round, viseme.lip_spread, viseme.closure)
        assert all(0.0 <= v <= 1.0 for v in values), symbol
    assert all(VISEMES[s].closure == 1.0 and VISEMES[s].jaw_open <= 0.1 for s in BILABIALS)
    assert all(VISEMES[s].jaw_open >= 0.6 and VISEMES[s].closure == 0.0 for s in OPEN_VOWELS)
    assert VISEMES["u:"].lip_round > 0.5 and VISEMES["i:"].lip_spread > 0.5
    assert viseme_for("'a") == VISEMES["a"]  # stress marks ignored
    assert viseme_for("_:") == REST and viseme_for("") == REST
    assert viseme_for("no-such-phoneme") == NEUTRAL_CONSONANT
    assert viseme_for("l/2") == VISEMES["l"]  # unknown variant → its base symbol


def test_observed_espeak_symbols_are_in_the_table() -> None:
    symbols = set()
    for text in HANDWRITTEN_SENTENCES[:12] + tuple(grid_sentences(4, seed=0)):
        symbols |= {p.symbol for p in synthesize(text).phonemes}
    assert symbols - set(VISEMES) == set()


def test_schedule_closes_lips_on_bilabials_and_opens_on_vowels(speech: Speech) -> None:
    num_frames = int(np.ceil(speech.duration * FPS))
    schedule = viseme_schedule(speech.phonemes, num_frames=num_frames, fps=FPS)
    assert schedule.as_array().shape == (num_frames, 4) and schedule.as_array().dtype == np.float32
    bilabial_frames = [_centre_frame(p) for p in speech.phonemes if p.symbol in BILABIALS]
    vowel_frames = [_centre_frame(p) for p in speech.phonemes if p.symbol in OPEN_VOWELS]
    assert len(bilabial_frames) == 5 and len(vowel_frames) >= 2
    assert np.all(schedule.closure[bilabial_frames] >= 0.9)
    assert np.all(schedule.jaw_open[bilabial_frames] <= 0.1)
    assert np.min(schedule.jaw_open[vowel_frames]) > np.max(schedule.jaw_open[bilabial_frames]) + 0.4
    assert np.max(schedule.closure[vowel_frames]) < 0.5


def test_short_bilabial_survives_smoothing() -> None:
    """A 30 ms 'p' between open vowels: plain smoothing would leave it half open."""
    phonemes = [PhonemeEvent("a", 0.20, 0.40), PhonemeEvent("p", 0.40, 0.43), PhonemeEvent("a", 0.43, 0.63)]
    for fps in (25.0, 30.0, 60.0):
        schedule = viseme_schedule(phonemes, num_frames=int(0.9 * fps), fps=fps, smoothing_s=0.04)
        frame = _centre_frame(phonemes[1], fps)
        assert schedule.closure[frame] >= 0.9
        assert schedule.jaw_open[frame] <= 0.1
        assert schedule.jaw_open[_centre_frame(phonemes[0], fps)] > 0.5


def test_short_vowel_between_bilabials_still_opens() -> None:
    """'bomb' at a fast rate: both closures hold at their centres and the 70 ms vowel still opens
    (corpus v1's one-frame closure plateau swallowed it, leaving utterances with no open vowel)."""
    phonemes = [PhonemeEvent("b", 0.20, 0.26), PhonemeEvent("A", 0.26, 0.33), PhonemeEvent("m", 0.33, 0.39)]
    schedule = viseme_schedule(phonemes, num_frames=25, fps=FPS)
    opening = schedule.jaw_open * (1.0 - schedule.closure)
    assert opening[_centre_frame(phonemes[1])] > 0.3
    for bilabial in (phonemes[0], phonemes[2]):
        assert schedule.closure[_centre_frame(bilabial)] >= 0.9


def test_silence_frames_are_at_rest() -> None:
    phonemes = [PhonemeEvent("a", 0.5, 0.7), PhonemeEvent("m", 0.7, 0.8), PhonemeEvent("i:", 0.8, 1.0)]
    schedule = viseme_schedule(phonemes, num_frames=50, fps=FPS, smoothing_s=0.04)  # 2 s
    frames = schedule.as_array()
    frame_times = (np.arange(50) + 0.5) / FPS
    silent = (frame_times < 0.3) | (frame_times > 1.2)
    speaking = (frame_times > 0.5) & (frame_times < 1.0)
    assert np.abs(frames[silent]).max() < 1e-3
    assert frames[speaking].max() > 0.5
    # pause symbols inside the timeline also count as rest
    with_pause = viseme_schedule([PhonemeEvent("_:", 0.0, 2.0)], num_frames=50, fps=FPS)
    assert np.abs(with_pause.as_array()).max() == 0.0


def test_schedule_edge_cases() -> None:
    assert viseme_schedule([], num_frames=0).as_array().shape == (0, 4)
    assert np.all(viseme_schedule([], num_frames=10).as_array() == 0.0)
    with pytest.raises(ValueError, match="fps=0"):
        viseme_schedule([], num_frames=10, fps=0)


# ---------------------------------------------------------------- sentences


def test_grid_sentences_follow_the_grammar() -> None:
    sentences = grid_sentences(300, seed=3)
    assert len(sentences) == 300 and len(set(sentences)) == 300
    slots = (GRID_COMMANDS, GRID_COLORS, GRID_PREPOSITIONS, GRID_LETTERS, GRID_DIGITS, GRID_ADVERBS)
    for sentence in sentences:
        words = sentence.split(" ")
        assert len(words) == 6 and all(word in slot for word, slot in zip(words, slots)), sentence
    assert "w" not in GRID_LETTERS and len(GRID_LETTERS) == 25
    assert grid_sentences(300, seed=3) == sentences
    assert grid_sentences(300, seed=4) != sentences
    assert len({s.split()[3] for s in sentences}) > 20  # letters vary
    with pytest.raises(ValueError, match=str(NUM_GRID_SENTENCES + 1)):
        grid_sentences(NUM_GRID_SENTENCES + 1, seed=0)


def test_handwritten_sentences() -> None:
    assert len(HANDWRITTEN_SENTENCES) >= 60 and len(set(HANDWRITTEN_SENTENCES)) == len(HANDWRITTEN_SENTENCES)
    assert all(4 <= len(s.split()) <= 14 for s in HANDWRITTEN_SENTENCES)
    text = " ".join(HANDWRITTEN_SENTENCES).lower()
    assert all(text.count(letter) >= 50 for letter in "mbp")
    corpus = corpus_sentences(num_grid=20, seed=1)
    assert corpus[: len(HANDWRITTEN_SENTENCES)] == list(HANDWRITTEN_SENTENCES)
    assert corpus[len(HANDWRITTEN_SENTENCES) :] == grid_sentences(20, seed=1)


def test_split_is_deterministic_disjoint_and_complete() -> None:
    sentences = corpus_sentences(num_grid=200, seed=0)
    splits = split_sentences(sentences)
    assert set(splits) == {"train", "val", "test"}
    names = [s for part in splits.values() for s in part]
    assert sorted(names) == sorted(sentences)  # every sentence exactly once
    assert 0.03 < len(splits["test"]) / len(sentences) < 0.2
    assert 0.03 < len(splits["val"]) / len(sentences) < 0.2
    assert split_sentences(sentences) == splits
    # by sentence: order and the rest of the corpus do not move a sentence
    reordered = split_sentences(list(reversed(sentences)))
    assert {k: set(v) for k, v in reordered.items()} == {k: set(v) for k, v in splits.items()}
    subset = split_sentences(sentences[:150])
    for name, part in subset.items():
        assert set(part) <= set(splits[name])
    assert split_sentences(sentences, seed=1) != splits


def test_split_is_stable_across_processes() -> None:
    """A stable hash, not Python's per-process salted hash()."""
    sentences = corpus_sentences(num_grid=50, seed=0)
    expected = split_sentences(sentences)["test"]
    code = (
        "from memface_hub.data.sentences import corpus_sentences, split_sentences;"
        "print(repr(split_sentences(corpus_sentences(num_grid=50, seed=0))['test']))"
    )
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        assert result.stdout.strip() == repr(expected)


def test_small_splits_are_never_empty() -> None:
    for count in (3, 4, 7):
        sentences = [f"sentence number {i}" for i in range(count)]
        splits = split_sentences(sentences)
        assert all(splits[name] for name in ("train", "val", "test")), splits
        assert sorted(s for part in splits.values() for s in part) == sorted(sentences)
    with pytest.raises(ValueError, match="val_fraction=0.6"):
        split_sentences(["a", "b", "c"], val_fraction=0.6, test_fraction=0.5)
