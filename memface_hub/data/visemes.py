"""Phoneme → viseme targets and a coarticulated per-frame mouth schedule.

Each espeak-ng phoneme (mnemonic, stress marks stripped, see :mod:`memface_hub.audio.tts`) maps to
a :class:`Viseme` target of four articulation channels in [0, 1]:

* ``jaw_open``   — how far the jaw / inner lips open,
* ``lip_round``  — rounding and protrusion (u:, w, oU, S),
* ``lip_spread`` — lip corners pulled apart (i:, I, eI, s),
* ``closure``    — lips pressed together (1 for m/b/p, 0.5 for the lip-to-teeth f/v).

:func:`viseme_schedule` turns a phoneme timeline into per-frame channels: targets held over each
phoneme on a 200 Hz grid (silence = all zeros, the closed mouth at rest), Gaussian-smoothed for
coarticulation, sampled at frame centres, then the bilabial closure is re-imposed around every
m/b/p centre so that smoothing never blurs it away (the corpus must teach lip closure).

    >>> schedule = viseme_schedule(speech.phonemes, num_frames=50, fps=25.0)
    >>> schedule.as_array().shape    # (50, 4): jaw_open, lip_round, lip_spread, closure
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass

import numpy as np

from memface_hub.audio.tts import PhonemeEvent, is_pause
from memface_hub.errors import MemFaceInputError

logger = logging.getLogger(__name__)

CHANNELS = ("jaw_open", "lip_round", "lip_spread", "closure")
FINE_RATE_HZ = 200.0  # time grid on which targets are held and smoothed


@dataclass(frozen=True)
class Viseme:
    """Articulation target of one phoneme, every channel in [0, 1]."""

    jaw_open: float
    lip_round: float
    lip_spread: float
    closure: float


REST = Viseme(0.0, 0.0, 0.0, 0.0)  # silence: mouth closed, relaxed
NEUTRAL_CONSONANT = Viseme(0.2, 0.0, 0.1, 0.0)  # fallback for symbols missing from the table

# espeak-ng en-us / en-gb mnemonics as reported in phoneme events (observed on the corpus text).
_BILABIAL = Viseme(0.05, 0.0, 0.0, 1.0)
_LABIODENTAL = Viseme(0.1, 0.0, 0.1, 0.5)
_ALVEOLAR = Viseme(0.2, 0.0, 0.1, 0.0)
VISEMES: dict[str, Viseme] = {
    # bilabials: lips closed, jaw nearly shut
    "m": _BILABIAL, "b": _BILABIAL, "p": _BILABIAL,
    # labiodentals: lower lip to upper teeth
    "f": _LABIODENTAL, "v": _LABIODENTAL,
    # labial-velar glide: strongly rounded
    "w": Viseme(0.1, 0.9, 0.0, 0.0),
    # dentals (tongue between teeth)
    "T": Viseme(0.2, 0.0, 0.15, 0.0), "D": Viseme(0.2, 0.0, 0.15, 0.0),
    # sibilants: alveolar spread, postalveolar protruded
    "s": Viseme(0.1, 0.0, 0.5, 0.0), "z": Viseme(0.1, 0.0, 0.5, 0.0),
    "S": Viseme(0.15, 0.6, 0.0, 0.0), "Z": Viseme(0.15, 0.6, 0.0, 0.0),
    "tS": Viseme(0.15, 0.6, 0.0, 0.0), "dZ": Viseme(0.15, 0.6, 0.0, 0.0),
    # alveolar stops, nasals, laterals (t# = flapped t, t2 = unreleased t, n- = syllabic n)
    "t": _ALVEOLAR, "d": _ALVEOLAR, "n": _ALVEOLAR, "t#": _ALVEOLAR, "t2": _ALVEOLAR, "n-": _ALVEOLAR,
    "l": Viseme(0.25, 0.0, 0.1, 0.0), "@L": Viseme(0.3, 0.0, 0.1, 0.0),
    # velars, glottals
    "k": Viseme(0.25, 0.0, 0.05, 0.0), "g": Viseme(0.25, 0.0, 0.05, 0.0), "N": Viseme(0.25, 0.0, 0.05, 0.0),
    "h": Viseme(0.35, 0.0, 0.0, 0.0), "?": Viseme(0.2, 0.0, 0.0, 0.0),
    # approximants (";" is espeak's palatal linking glide between vowels, as in "why are")
    "r": Viseme(0.2, 0.4, 0.0, 0.0), "r-": Viseme(0.25, 0.35, 0.0, 0.0),
    "j": Viseme(0.15, 0.0, 0.5, 0.0), ";": Viseme(0.2, 0.0, 0.4, 0.0),
    # close front vowels: spread
    "i:": Viseme(0.15, 0.0, 0.8, 0.0), "i": Viseme(0.2, 0.0, 0.7, 0.0),
    "I": Viseme(0.25, 0.0, 0.6, 0.0), "I2": Viseme(0.25, 0.0, 0.5, 0.0), "I#": Viseme(0.25, 0.0, 0.5, 0.0),
    "i@": Viseme(0.3, 0.0, 0.5, 0.0), "i@3": Viseme(0.3, 0.1, 0.4, 0.0), "I@": Viseme(0.3, 0.0, 0.5, 0.0),
    # mid front vowels
    "eI": Viseme(0.4, 0.0, 0.6, 0.0), "e": Viseme(0.45, 0.0, 0.5, 0.0),
    "E": Viseme(0.6, 0.0, 0.45, 0.0), "e@": Viseme(0.5, 0.0, 0.4, 0.0),
    # open vowels: large jaw
    "a": Viseme(0.85, 0.0, 0.3, 0.0), "aa": Viseme(0.85, 0.0, 0.3, 0.0), "A": Viseme(0.9, 0.0, 0.1, 0.0),
    "A:": Viseme(0.9, 0.0, 0.1, 0.0), "A@": Viseme(0.8, 0.1, 0.05, 0.0), "0": Viseme(0.85, 0.1, 0.0, 0.0),
    "aI": Viseme(0.8, 0.0, 0.3, 0.0), "aU": Viseme(0.8, 0.3, 0.0, 0.0),
    "aI@": Viseme(0.75, 0.0, 0.2, 0.0), "aI3": Viseme(0.75, 0.05, 0.2, 0.0),
    "aU@": Viseme(0.75, 0.3, 0.0, 0.0),
    "V": Viseme(0.65, 0.0, 0.1, 0.0),
    # open-mid back rounded vowels
    "O": Viseme(0.75, 0.4, 0.0, 0.0), "O:": Viseme(0.7, 0.5, 0.0, 0.0), "O@": Viseme(0.65, 0.5, 0.0, 0.0),
    "O2": Viseme(0.65, 0.4, 0.0, 0.0), "OI": Viseme(0.6, 0.5, 0.1, 0.0),
    # central vowels (schwas, r-coloured 3)
    "@": Viseme(0.35, 0.0, 0.0, 0.0), "a#": Viseme(0.4, 0.0, 0.0, 0.0), "@2": Viseme(0.3, 0.0, 0.0, 0.0),
    "@-": Viseme(0.3, 0.0, 0.0, 0.0), "3": Viseme(0.35, 0.3, 0.0, 0.0), "3:": Viseme(0.4, 0.35, 0.0, 0.0),
    # close / mid back rounded vowels
    "u:": Viseme(0.25, 0.9, 0.0, 0.0), "U": Viseme(0.3, 0.7, 0.0, 0.0), "U@": Viseme(0.35, 0.6, 0.0, 0.0),
    "oU": Viseme(0.5, 0.7, 0.0, 0.0), "o@": Viseme(0.5, 0.6, 0.0, 0.0), "@U": Viseme(0.45, 0.6, 0.0, 0.0),
}  # fmt: skip

BILABIALS: frozenset[str] = frozenset({"m", "b", "p"})
OPEN_VOWELS: frozenset[str] = frozenset(
    {"a", "aa", "A", "A:", "A@", "0", "aI", "aU", "aI@", "aI3", "aU@", "V", "O", "O:", "O@", "O2", "OI", "E"}
)


@functools.cache
def _log_unknown_symbol(symbol: str) -> None:
    """Log each unknown symbol once (the cache makes repeat calls no-ops)."""
    logger.debug("no viseme for espeak phoneme %r; using a neutral consonant", symbol)


def viseme_for(symbol: str) -> Viseme:
    """Target for one espeak phoneme; pauses → :data:`REST`, unknown → :data:`NEUTRAL_CONSONANT`.

    Stress marks are ignored, and an unknown variant such as ``"l/2"`` or ``"t3"`` falls back to its
    base symbol when that is in the table.
    """
    symbol = symbol.lstrip("',%")
    if is_pause(symbol):
        return REST
    if symbol in VISEMES:
        return VISEMES[symbol]
    base = symbol.rstrip("0123456789#/-")
    if base and base in VISEMES:
        return VISEMES[base]
    _log_unknown_symbol(symbol)
    return NEUTRAL_CONSONANT


@dataclass
class VisemeSchedule:
    """Per-frame articulation channels, each ``(num_frames,)`` float32 in [0, 1]."""

    jaw_open: np.ndarray  # (num_frames,)
    lip_round: np.ndarray  # (num_frames,)
    lip_spread: np.ndarray  # (num_frames,)
    closure: np.ndarray  # (num_frames,)

    def as_array(self) -> np.ndarray:
        """Channels stacked in :data:`CHANNELS` order: ``(num_frames, 4)`` float32."""
        return np.stack([self.jaw_open, self.lip_round, self.lip_spread, self.closure], axis=-1)

    def __len__(self) -> int:
        return len(self.jaw_open)


def _gaussian_smooth(values: np.ndarray, sigma_samples: float) -> np.ndarray:
    """Smooth ``(num_samples, channels)`` along time with zero (rest) padding; same shape out."""
    if sigma_samples <= 0:
        return values
    radius = int(math.ceil(4.0 * sigma_samples))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma_samples) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(values, ((radius, radius), (0, 0)))  # (num_samples + 2 radius, channels)
    return np.stack(
        [np.convolve(padded[:, c], kernel, mode="valid") for c in range(values.shape[1])], axis=-1
    )


def viseme_schedule(
    phonemes: list[PhonemeEvent],
    num_frames: int,
    fps: float = 25.0,
    smoothing_s: float = 0.03,
) -> VisemeSchedule:
    """Coarticulated mouth channels for frames ``i = 0..num_frames-1`` centred at ``(i + 0.5) / fps``.

    Args:
        phonemes: timeline in seconds (pauses, if present, count as silence).
        num_frames: length of the schedule; phonemes past ``num_frames / fps`` are ignored.
        fps: frame rate.
        smoothing_s: standard deviation in seconds of the coarticulation Gaussian (0 = none).

    Returns:
        A :class:`VisemeSchedule` of four ``(num_frames,)`` float32 arrays. At the frame that holds
        each m/b/p centre (and every frame centre within 40 % of the phoneme of it) ``closure`` is 1
        and ``jaw_open`` at most the bilabial target.
    """
    if num_frames < 0:
        raise MemFaceInputError(f"num_frames={num_frames}", "must be >= 0")
    if fps <= 0:
        raise MemFaceInputError(f"fps={fps}", "must be > 0")
    if smoothing_s < 0:
        raise MemFaceInputError(f"smoothing_s={smoothing_s}", "must be >= 0")
    if num_frames == 0:
        empty = np.zeros(0, dtype=np.float32)
        return VisemeSchedule(empty, empty.copy(), empty.copy(), empty.copy())

    # 1. hold each phoneme's target on a fine grid; gaps between phonemes stay at rest (zeros)
    duration = num_frames / fps
    num_fine = int(math.ceil(duration * FINE_RATE_HZ)) + 1
    fine_times = np.arange(num_fine) / FINE_RATE_HZ  # (num_fine,)
    targets = np.zeros((num_fine, len(CHANNELS)), dtype=np.float64)  # (num_fine, 4)
    for phoneme in sorted(phonemes, key=lambda p: p.start):
        viseme = viseme_for(phoneme.symbol)
        inside = (fine_times >= phoneme.start) & (fine_times < phoneme.end)
        targets[inside] = (viseme.jaw_open, viseme.lip_round, viseme.lip_spread, viseme.closure)

    # 2. coarticulation: Gaussian smoothing in time
    smoothed = _gaussian_smooth(targets, smoothing_s * FINE_RATE_HZ)  # (num_fine, 4)

    # 3. sample at frame centres
    frame_times = (np.arange(num_frames) + 0.5) / fps  # (num_frames,)
    frames = np.stack(
        [np.interp(frame_times, fine_times, smoothed[:, c]) for c in range(len(CHANNELS))], axis=-1
    )  # (num_frames, 4)
    jaw_open, lip_round, lip_spread, closure = (frames[:, c] for c in range(len(CHANNELS)))

    # 4. re-impose bilabial closure: weight 1 within max(half a frame, 40 % of the phoneme) of each
    #    m/b/p centre, so the frame holding the centre is always closed, then a narrow Gaussian
    #    fall-off blending toward closed lips. The plateau stays inside the phoneme: a wider one
    #    (corpus v1 used a whole frame each side) swallowed short vowels between two bilabials
    #    ("bomb" at 180 wpm never opened), which also made the utterance's τ meaningless.
    falloff_s = max(smoothing_s / 2.5, 1e-3)
    for phoneme in phonemes:
        if phoneme.symbol.lstrip("',%") not in BILABIALS:
            continue
        centre = 0.5 * (phoneme.start + phoneme.end)
        half_width = max(0.5 / fps, 0.4 * (phoneme.end - phoneme.start))
        distance = np.maximum(np.abs(frame_times - centre) - half_width, 0.0)  # (num_frames,)
        weight = np.exp(-0.5 * (distance / falloff_s) ** 2)
        target = viseme_for(phoneme.symbol)
        closure = (1.0 - weight) * closure + weight  # toward fully closed lips (1)
        jaw_open = (1.0 - weight) * jaw_open + weight * np.minimum(jaw_open, target.jaw_open)

    return VisemeSchedule(
        jaw_open=np.clip(jaw_open, 0.0, 1.0).astype(np.float32),
        lip_round=np.clip(lip_round, 0.0, 1.0).astype(np.float32),
        lip_spread=np.clip(lip_spread, 0.0, 1.0).astype(np.float32),
        closure=np.clip(closure, 0.0, 1.0).astype(np.float32),
    )
