"""Audio front ends: shapes at 25 fps, time alignment, input checks, configs, the feature cache.

wav2vec2/deepspeech run on tiny randomly initialised checkpoints saved to a temp folder (nothing is
downloaded); phonemes run the real pocketsphinx decoder on espeak-ng speech.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import tone
from memface_hub.audio import (
    FRONTENDS,
    PHONES,
    DeepSpeechFrontEnd,
    MelFrontEnd,
    PhonemeFrontEnd,
    Wav2Vec2FrontEnd,
    build_frontend,
    cache_key,
    cached_features,
    validate_waveform,
)
from memface_hub.audio.phonemes import NOISE_PHONES, model_phones
from memface_hub.errors import MemFaceInputError

SR = 16_000


def noise(seconds: float, level: float = 0.01, seed: int = 0) -> np.ndarray:
    return (level * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


def speech_like(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """Noise with a wandering pitch and a syllable-rate envelope: varied enough for encoders."""
    time = np.arange(int(seconds * SR)) / SR
    pitch = 150 + 50 * np.sin(2 * np.pi * 0.7 * time)
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * time) ** 2
    voiced = np.sin(2 * np.pi * np.cumsum(pitch) / SR) * envelope
    return (0.3 * voiced + noise(seconds, 0.02, seed)).astype(np.float32)


# ---------------------------------------------------------------- registry and import hygiene


def test_registry_builds_every_front_end_and_rejects_unknown_names():
    assert set(FRONTENDS) == {"mel", "phonemes", "phone_net", "wav2vec2", "deepspeech"}
    assert isinstance(build_frontend("mel", n_mels=40), MelFrontEnd)
    assert build_frontend("mel", n_mels=40).feature_dim == 160
    with pytest.raises(ValueError, match="deepspeech, mel, phone_net, phonemes, wav2vec2"):
        build_frontend("whisperx")
    with pytest.raises(ValueError, match="unexpected config keys"):
        build_frontend({"name": "mel", "n_mel": 40})
    with pytest.raises(ValueError, match="n_mels"):
        MelFrontEnd(n_mels=0)
    # kwargs override a config's entries
    assert build_frontend({"name": "phonemes", "smoothing_frames": 1.0}, smoothing_frames=3.0).smoothing_frames == 3.0


def test_import_is_light():
    code = ("import sys, memface_hub.audio; "
            "print([m for m in ('torch', 'transformers', 'pocketsphinx') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# ---------------------------------------------------------------- input checks


@pytest.mark.parametrize(
    ("waveform", "words"),
    [
        (np.zeros(0, np.float32), "empty"),
        (np.r_[tone(0.5), np.nan].astype(np.float32), "non-finite"),
        (np.stack([tone(0.5), tone(0.5)]), "shape (2, 8000)"),
        (np.zeros(SR, np.float32), "silent"),
        (np.full(SR, 1e-5, np.float32), "silent"),
        ((tone(0.5) * 32767).astype(np.int16), "dtype int16"),
        ([0.1, 0.2], "numpy array"),
        (tone(0.01), "shorter than one 25 ms"),
        (np.clip(tone(0.5) * 20, -1, 1).astype(np.float32), "clipped"),
    ],
    ids=["empty", "nan", "2d", "zeros", "quiet", "int16", "list", "too-short", "clipped"],
)
def test_bad_waveforms_raise_one_line_errors(waveform, words):
    for check in (lambda: validate_waveform(waveform, SR), lambda: MelFrontEnd()(waveform, SR)):
        with pytest.raises(MemFaceInputError) as info:
            check()
        message = str(info.value)
        assert "\n" not in message and message.startswith("audio: ") and words in message, message


def test_sampling_rate_mismatch_names_both_rates_and_resample_fixes_it(caplog):
    audio_44k = tone(1.0, sample_rate=44_100)
    with pytest.raises(MemFaceInputError, match=r"44100 Hz.*expects 16000 Hz.*resample=True"):
        MelFrontEnd()(audio_44k, 44_100)
    with pytest.raises(MemFaceInputError, match="positive integer"):
        MelFrontEnd()(tone(1.0), 16000.5)
    assert MelFrontEnd()(tone(1.0), 16000.0).shape == (25, 320)
    with caplog.at_level("INFO", logger="memface_hub.audio.base"):
        features = MelFrontEnd(resample=True)(audio_44k, 44_100)
    assert "resampling 44100 Hz → 16000 Hz" in caplog.text
    assert features.shape == (25, 320)
    reference = MelFrontEnd()(tone(1.0), SR)
    assert np.corrcoef(features.ravel(), reference.ravel())[0, 1] > 0.9  # the same tone after resampling


def test_num_frames_must_be_positive():
    with pytest.raises(MemFaceInputError, match="num_frames=0: must be a positive integer"):
        MelFrontEnd()(tone(1.0), SR, num_frames=0)


# ---------------------------------------------------------------- mel


def test_mel_shape_and_25_fps_frame_count():
    features = MelFrontEnd()(tone(2.0), SR)
    assert features.shape == (50, 320) and features.dtype == np.float32
    assert MelFrontEnd(n_mels=40)(tone(1.0), SR).shape == (25, 160)
    assert MelFrontEnd()(tone(1.02), SR).shape == (26, 320)  # round(25.5) → 26 (banker's rounding)


def test_mel_num_frames_trims_and_edge_pads():
    frontend = MelFrontEnd()
    full = frontend(tone(2.0), SR)  # (50, 320)
    np.testing.assert_array_equal(frontend(tone(2.0), SR, num_frames=30), full[:30])
    padded = frontend(tone(2.0), SR, num_frames=70)
    assert padded.shape == (70, 320)
    np.testing.assert_array_equal(padded[:50], full)
    assert (padded[50:] == padded[-1]).all()  # edge padding repeats the last frame


def test_mel_is_time_aligned_and_tells_tone_from_noise():
    import librosa

    # 1 s of faint noise, then 1 s of a 1 kHz tone over the same noise
    audio = noise(2.0)
    audio[SR:] += tone(1.0, frequency=1000.0)
    features = MelFrontEnd()(audio, SR).reshape(50, 4, 80)  # (frames, sub-frames, n_mels)
    tone_bin = int(np.argmin(np.abs(librosa.mel_frequencies(n_mels=82, fmax=SR / 2)[1:-1] - 1000.0)))
    level = features[:, :, tone_bin].mean(axis=1)  # (frames,)
    assert level[:24].max() < 0 < level[26:].min()  # the step happens at video frame 25 (t = 1 s)
    assert level[26:].mean() - level[:24].mean() > 1.5  # in units of the bin's standard deviation
    # normalised per utterance and per mel bin
    np.testing.assert_allclose(features[:, :, tone_bin].mean(), 0.0, atol=0.05)


def test_mel_config_round_trip():
    frontend = MelFrontEnd(n_mels=64, resample=True)
    config = json.loads(json.dumps(frontend.config()))
    assert config == {"name": "mel", "n_mels": 64, "resample": True}
    rebuilt = build_frontend(config)
    np.testing.assert_array_equal(rebuilt(tone(1.0), SR), frontend(tone(1.0), SR))


# ---------------------------------------------------------------- phonemes (real pocketsphinx)


@pytest.fixture(scope="module")
def mom_bought_a_map():
    import librosa

    from memface_hub.audio.tts import synthesize

    speech = synthesize("Mom bought a map", voice="en-us")
    audio = librosa.resample(speech.samples, orig_sr=speech.sample_rate, target_sr=SR)
    return speech, audio


@pytest.fixture(scope="module")
def phoneme_frontend():
    return PhonemeFrontEnd()


def test_phone_inventory_matches_the_bundled_model():
    assert len(PHONES) == 40 and PHONES[-1] == "SIL"
    assert set(model_phones()) == set(PHONES) | set(NOISE_PHONES)


def test_phonemes_decode_tts_speech_with_bilabials_in_place(phoneme_frontend, mom_bought_a_map):
    speech, audio = mom_bought_a_map
    features = phoneme_frontend(audio, SR)
    num_frames = round(len(audio) / SR * 25)
    assert features.shape == (num_frames, len(PHONES)) and features.dtype == np.float32
    np.testing.assert_allclose(features.sum(axis=1), 1.0, atol=1e-5)  # a distribution per frame
    best = [PHONES[index] for index in features.argmax(axis=1)]
    assert sum(phone != "SIL" for phone in best) >= num_frames // 4, best  # not all silence

    bilabial = features[:, [PHONES.index(p) for p in ("M", "B", "P")]].sum(axis=1)  # (frames,)
    bilabial_frames = np.flatnonzero(bilabial > 0.5)
    assert bilabial_frames.size, best
    tts_frames = np.array([(p.start + p.end) / 2 * 25 for p in speech.phonemes if p.symbol in ("m", "b", "p")])
    distance = np.abs(bilabial_frames[:, None] - tts_frames[None, :]).min(axis=1)
    assert (distance <= 3).all(), (bilabial_frames, tts_frames)


def test_phonemes_are_repeatable_and_smoothing_matters(phoneme_frontend, mom_bought_a_map):
    _, audio = mom_bought_a_map
    first = phoneme_frontend(audio, SR)
    phoneme_frontend(speech_like(1.5), SR)  # another utterance in between must not change the result
    np.testing.assert_array_equal(phoneme_frontend(audio, SR), first)
    sharp = PhonemeFrontEnd(smoothing_frames=0.0)(audio, SR)
    np.testing.assert_allclose(sharp * 4, np.round(sharp * 4), atol=1e-6)  # one-hot averaged over 4 sub-frames
    assert not np.allclose(sharp, first)
    assert build_frontend(phoneme_frontend.config()).smoothing_frames == 1.0
    with pytest.raises(ValueError, match="smoothing_frames"):
        PhonemeFrontEnd(smoothing_frames=-1)


# ---------------------------------------------------------------- feature cache


class CountingMel(MelFrontEnd):
    calls = 0

    def _extract(self, audio, num_frames):
        type(self).calls += 1
        return super()._extract(audio, num_frames)


def test_cache_hit_skips_the_front_end_and_keys_on_num_frames(tmp_path):
    frontend, audio = CountingMel(), tone(1.0)
    CountingMel.calls = 0
    first = cached_features(frontend, audio, SR, 25, tmp_path / "cache")
    assert CountingMel.calls == 1
    second = cached_features(frontend, audio, SR, 25, tmp_path / "cache")
    assert CountingMel.calls == 1  # served from disk
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, MelFrontEnd()(audio, SR, 25))
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1

    other = cached_features(frontend, audio, SR, 30, tmp_path / "cache")
    assert CountingMel.calls == 2 and other.shape == (30, 320)
    assert cache_key(frontend, audio, SR, 25) != cache_key(frontend, audio, SR, 30)
    assert cache_key(frontend, audio, SR, 25) != cache_key(MelFrontEnd(n_mels=40), audio, SR, 25)
    assert cache_key(frontend, audio, SR, 25) != cache_key(frontend, audio * 0.5, SR, 25)
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 2

    # a corrupt cache file is recomputed, not trusted
    path = tmp_path / "cache" / f"{cache_key(frontend, audio, SR, 25)[:16]}.safetensors"
    path.write_bytes(b"garbage")
    np.testing.assert_array_equal(cached_features(frontend, audio, SR, 25, tmp_path / "cache"), first)
    assert CountingMel.calls == 3


# ---------------------------------------------------------------- wav2vec2 / HuBERT / CTC (tiny checkpoints)

TINY = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
    conv_dim=(32, 32, 32), conv_kernel=(10, 8, 4), conv_stride=(5, 8, 8),  # total stride 320 → 50 Hz
    num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, vocab_size=12,
)


def save_tiny(model, path):
    from transformers import Wav2Vec2FeatureExtractor

    model.save_pretrained(path)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SR, do_normalize=True).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def tiny_wav2vec2(tmp_path_factory):
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(0)
    return save_tiny(Wav2Vec2Model(Wav2Vec2Config(**TINY)), tmp_path_factory.mktemp("tiny_wav2vec2"))


@pytest.fixture(scope="module")
def tiny_ctc(tmp_path_factory):
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    torch.manual_seed(1)
    return save_tiny(Wav2Vec2ForCTC(Wav2Vec2Config(**TINY)), tmp_path_factory.mktemp("tiny_ctc"))


def reference_outputs(path, audio, ctc=False):
    """What the model itself says, loaded independently of the front end: ``(steps, D)`` at 50 Hz."""
    import torch
    from transformers import AutoFeatureExtractor, AutoModel, Wav2Vec2ForCTC

    inputs = AutoFeatureExtractor.from_pretrained(path)(audio, sampling_rate=SR, return_tensors="pt")
    model = (Wav2Vec2ForCTC if ctc else AutoModel).from_pretrained(path).eval()
    with torch.no_grad():
        outputs = model(**inputs, output_hidden_states=True)
    return outputs.logits[0].numpy() if ctc else [state[0].numpy() for state in outputs.hidden_states]


def test_wav2vec2_hidden_states_at_25_fps(tiny_wav2vec2):
    audio = speech_like(2.0)
    frontend = Wav2Vec2FrontEnd(tiny_wav2vec2, layer=-1)
    assert frontend.feature_dim == 32 and frontend.num_layers == 3
    assert not frontend.encoder.is_loaded  # feature_dim reads the config only
    features = frontend(audio, SR)
    assert features.shape == (50, 32) and features.dtype == np.float32

    states = reference_outputs(tiny_wav2vec2, audio)  # 3 × (steps, 32) at 50 Hz
    assert 98 <= len(states[-1]) <= 100
    np.testing.assert_allclose(features[10], states[-1][20:22].mean(0), atol=1e-5)  # frame i = steps 2i, 2i+1
    pairs = np.clip(2 * np.arange(50)[:, None] + np.arange(2), 0, len(states[-1]) - 1)  # (50, 2), edge-clipped
    np.testing.assert_allclose(features, states[-1][pairs].mean(1), atol=1e-5)

    first_layer = Wav2Vec2FrontEnd(tiny_wav2vec2, layer=0)(audio, SR)
    np.testing.assert_allclose(first_layer[10], states[0][20:22].mean(0), atol=1e-5)
    assert not np.allclose(first_layer, features)

    trimmed, padded = frontend(audio, SR, num_frames=20), frontend(audio, SR, num_frames=60)
    np.testing.assert_allclose(trimmed, features[:20], atol=1e-6)
    assert padded.shape == (60, 32) and (padded[52:] == padded[-1]).all()

    with pytest.raises(ValueError, match="layer=5 is out of range"):
        Wav2Vec2FrontEnd(tiny_wav2vec2, layer=5)(audio, SR)


def test_wav2vec2_config_round_trip(tiny_wav2vec2):
    audio = speech_like(1.0, seed=3)
    frontend = Wav2Vec2FrontEnd(tiny_wav2vec2, layer=1)
    config = json.loads(json.dumps(frontend.config()))
    assert config == {"name": "wav2vec2", "model_name_or_path": tiny_wav2vec2, "layer": 1,
                      "device": "cpu", "resample": False}
    np.testing.assert_array_equal(build_frontend(config)(audio, SR), frontend(audio, SR))


def test_hubert_checkpoints_load_through_the_same_front_end(tmp_path):
    import torch
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(2)
    path = save_tiny(HubertModel(HubertConfig(**TINY)), tmp_path / "tiny_hubert")
    features = Wav2Vec2FrontEnd(path, layer=-2)(speech_like(1.0), SR)
    assert features.shape == (25, 32) and np.isfinite(features).all()


def test_wav2vec2_reads_the_encoder_of_a_ctc_checkpoint(tiny_ctc):
    audio = speech_like(1.0, seed=4)
    states = reference_outputs(tiny_ctc, audio)[-1]  # AutoModel: the bare encoder
    pairs = np.clip(2 * np.arange(25)[:, None] + np.arange(2), 0, len(states) - 1)
    np.testing.assert_allclose(Wav2Vec2FrontEnd(tiny_ctc)(audio, SR), states[pairs].mean(1), atol=1e-5)


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(MemFaceInputError, match="cannot load the model config"):
        _ = Wav2Vec2FrontEnd(str(tmp_path / "no_such_model")).feature_dim


def test_deepspeech_windows_of_ctc_logits(tiny_ctc):
    audio = speech_like(2.0, seed=1)
    frontend = DeepSpeechFrontEnd(tiny_ctc)  # window = 16
    assert frontend.feature_dim == 16 * 12 and not frontend.encoder.is_loaded  # known before loading weights
    features = frontend(audio, SR)
    assert features.shape == (50, 192) and features.dtype == np.float32

    logits = reference_outputs(tiny_ctc, audio, ctc=True)  # (steps, 12) at 50 Hz
    windows = features.reshape(50, 16, 12)
    np.testing.assert_allclose(windows[10], logits[13:29], atol=1e-5)  # centred on frame 10: steps 2·10+1 ± 8
    np.testing.assert_allclose(windows[0, :7], np.repeat(logits[:1], 7, axis=0), atol=1e-5)  # edge padding
    np.testing.assert_allclose(windows[0, 7:], logits[:9], atol=1e-5)

    small = DeepSpeechFrontEnd(tiny_ctc, window=4)
    assert small(audio, SR, num_frames=40).shape == (40, 48)
    config = json.loads(json.dumps(frontend.config()))
    assert config == {"name": "deepspeech", "model_name_or_path": tiny_ctc, "window": 16,
                      "device": "cpu", "resample": False}
    np.testing.assert_array_equal(build_frontend(config)(audio, SR), features)
    with pytest.raises(ValueError, match="window"):
        DeepSpeechFrontEnd(tiny_ctc, window=0)


def test_mel_blocks_match_one_whole_utterance_spectrogram():
    """Long audio is analysed in 30 s blocks; the result equals librosa's single centred spectrogram."""
    import librosa

    from memface_hub.audio.base import frames_per_video_frame
    from memface_hub.audio.mel import BLOCK_FRAMES, HOP_LENGTH, LOG_FLOOR, N_FFT

    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(BLOCK_FRAMES * HOP_LENGTH + 12_345)).astype(np.float32)  # > one block
    mel = librosa.feature.melspectrogram(y=audio, sr=16_000, n_fft=N_FFT, hop_length=HOP_LENGTH, win_length=N_FFT,
                                         n_mels=80, power=2.0, center=True)
    log_mel = np.log(mel + LOG_FLOOR).T
    log_mel = (log_mel - log_mel.mean(0)) / (log_mel.std(0) + 1e-5)
    frames = round(len(audio) / 16_000 * 25)
    expected = frames_per_video_frame(log_mel, 4, frames).reshape(frames, -1)
    np.testing.assert_allclose(build_frontend("mel")(audio, 16_000), expected, atol=1e-4)
