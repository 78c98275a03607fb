"""Audio augmentation towards real recordings, for training front ends and a2e models on clean audio.

One augmented copy, drawn at random: speed and pitch together (the waveform read at 0.88–1.12 × its
rate; the caller stretches its labels by the returned factor), reverberation (an exponentially decaying
noise impulse response, RT60 0.15–0.7 s), band-limiting (low-pass 2.5–7 kHz, high-pass 60–400 Hz), and
white or pink noise at 5–30 dB SNR; peaks are kept below full scale.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import butter, fftconvolve, sosfilt

from ..io.audio import AUDIO_SAMPLE_RATE


def augment_audio(audio: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """One augmented copy of 16 kHz ``audio`` ``(samples,)`` and its time-stretch factor (new duration / old)."""
    rate = AUDIO_SAMPLE_RATE
    # speed and pitch together: read the waveform at another rate
    factor = float(rng.uniform(0.88, 1.12))
    length = int(len(audio) * factor)
    audio = np.interp(np.arange(length) / factor, np.arange(len(audio)), audio).astype(np.float32)
    if rng.random() < 0.5:        # reverberation
        rt60 = rng.uniform(0.15, 0.7)
        t = np.arange(int(rt60 * rate)) / rate
        response = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60) * rng.uniform(0.1, 0.6)
        response[0] = 1.0
        audio = fftconvolve(audio, response)[:length].astype(np.float32)
    if rng.random() < 0.6:        # band-limiting: a microphone, a phone line, a laptop
        low = butter(4, rng.uniform(2500, 7000), "lowpass", fs=rate, output="sos")
        high = butter(2, rng.uniform(60, 400), "highpass", fs=rate, output="sos")
        audio = sosfilt(high, sosfilt(low, audio)).astype(np.float32)
    if rng.random() < 0.7:        # noise, white or pink, 5–30 dB below the speech
        noise = rng.standard_normal(length).astype(np.float32)
        if rng.random() < 0.5:
            spectrum = np.fft.rfft(noise)
            spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
            noise = np.fft.irfft(spectrum, length).astype(np.float32)
        power = float(np.mean(audio ** 2)) + 1e-10
        snr = 10 ** (rng.uniform(5, 30) / 10)
        audio = audio + noise * np.sqrt(power / snr / (float(np.mean(noise ** 2)) + 1e-12))
    peak = float(np.abs(audio).max(initial=0.0))
    if peak > 0.95:               # reverberation and noise can push the peaks past full scale
        audio = audio * (0.95 / peak)
    return audio.astype(np.float32), factor


__all__ = ["augment_audio"]
