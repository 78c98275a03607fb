"""Speaking styles: the one-to-many part of the synthetic corpus (version 3).

The same sentence is spoken by people who move their mouths differently: some open the jaw, some
mostly the lips, some round and spread strongly, some smile at rest or speak with one corner of the
mouth. A :class:`SpeakingStyle`, drawn at random per clip (:func:`draw_style`), changes

* the viseme schedule (:func:`apply_style`): articulation ``amplitude`` on jaw opening, ``rounding``
  and ``spreading`` gains, and the coarticulation span (``coarticulation_s``, the schedule's
  smoothing);
* the face's geometry (:meth:`.FaceAnimator.moved_points`): ``jaw_share`` (jaw drop vs lip parting for
  the same opening), ``asymmetry`` (one corner moves more than the other), ``smile`` (corners out and up
  at rest);
* the voice (:mod:`.demo_corpus`): speech ``rate`` in words per minute and ``pitch``.

Bilabial closure is never styled: every style shuts the lips on m/b/p, which is what makes the
mapping one-to-*many* valid motions rather than noise.

    >>> style = draw_style(np.random.default_rng(0))
    >>> channels = apply_style(schedule.as_array(), style)       # (T, 4) → (T, 4)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from ..errors import MemFaceInputError

# Ranges each style parameter is drawn from (uniformly); the neutral style (v2's only one) is inside each.
STYLE_RANGES: dict[str, tuple[float, float]] = {
    "amplitude": (0.6, 1.35),
    "jaw_share": (0.25, 0.75),
    "rounding": (0.5, 1.5),
    "spreading": (0.4, 1.6),
    "asymmetry": (-0.35, 0.35),
    "smile": (0.0, 0.45),
    "coarticulation_s": (0.02, 0.06),
}
RATE_RANGE = (120, 210)     # espeak-ng words per minute
PITCH_RANGE = (15, 85)      # espeak-ng pitch, 0..100 around the voice's own
MAX_OPEN = 1.4              # the largest jaw opening a style may ask for (1 = the viseme table's widest)


@dataclass(frozen=True)
class SpeakingStyle:
    """How one clip's speaker moves the mouth. The defaults are corpus v2's single style."""

    amplitude: float = 1.0          # gain on jaw opening
    jaw_share: float = 0.5          # 0: the lips part alone, 1: the jaw drops alone (0.5: both, as v2)
    rounding: float = 1.0           # gain on lip rounding
    spreading: float = 1.0          # gain on lip spreading
    asymmetry: float = 0.0          # > 0: the face's right corner moves more, < 0: the left
    smile: float = 0.0              # resting smile: corners out and up (0..1)
    coarticulation_s: float = 0.03  # standard deviation of the coarticulation smoothing, seconds

    def __post_init__(self):
        for item in fields(self):
            value = getattr(self, item.name)
            if not isinstance(value, (int, float)) or not np.isfinite(value):
                raise MemFaceInputError(f"style.{item.name}", f"must be a finite number, got {value!r}")
        if not 0.0 <= self.jaw_share <= 1.0:
            raise MemFaceInputError("style.jaw_share", f"must be in [0, 1], got {self.jaw_share}")
        if self.amplitude < 0 or self.rounding < 0 or self.spreading < 0 or self.coarticulation_s < 0:
            raise MemFaceInputError("style", "amplitude, rounding, spreading and coarticulation_s must be ≥ 0")
        if not -1.0 <= self.asymmetry <= 1.0 or not 0.0 <= self.smile <= 1.0:
            raise MemFaceInputError("style", "asymmetry must be in [-1, 1] and smile in [0, 1]")

    def as_dict(self) -> dict:
        return {key: round(float(value), 4) for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> SpeakingStyle:
        unknown = set(data) - {item.name for item in fields(cls)}
        if unknown:
            raise MemFaceInputError("style", f"unknown fields {sorted(unknown)}")
        return cls(**{key: float(value) for key, value in data.items()})


NEUTRAL_STYLE = SpeakingStyle()


def draw_style(rng: np.random.Generator) -> SpeakingStyle:
    """A style with every parameter drawn uniformly from :data:`STYLE_RANGES`."""
    return SpeakingStyle(**{name: float(rng.uniform(low, high)) for name, (low, high) in STYLE_RANGES.items()})


def draw_voice(rng: np.random.Generator) -> tuple[int, int]:
    """``(rate, pitch)`` for espeak-ng, uniform in :data:`RATE_RANGE` and :data:`PITCH_RANGE`."""
    return int(rng.integers(RATE_RANGE[0], RATE_RANGE[1] + 1)), int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1))


def apply_style(channels: np.ndarray, style: SpeakingStyle) -> np.ndarray:
    """Scale a viseme schedule ``(T, 4)`` (jaw_open, lip_round, lip_spread, closure) by a style → ``(T, 4)``.

    Jaw opening by ``amplitude`` (at most :data:`MAX_OPEN`), rounding and spreading by their gains (at
    most 1.5); closure unchanged. The coarticulation span is the schedule's own smoothing
    (``viseme_schedule(smoothing_s=style.coarticulation_s)``).
    """
    channels = np.asarray(channels, np.float32)
    if channels.ndim != 2 or channels.shape[1] != 4:
        raise MemFaceInputError("channels", f"expected (T, 4), got {channels.shape}")
    styled = channels.copy()
    styled[:, 0] = np.clip(channels[:, 0] * style.amplitude, 0.0, MAX_OPEN)
    styled[:, 1] = np.clip(channels[:, 1] * style.rounding, 0.0, 1.5)
    styled[:, 2] = np.clip(channels[:, 2] * style.spreading, 0.0, 1.5)
    return styled
