"""Audio-to-expression metrics, exactly as docs/EVALUATION.md defines them.

All vertex quantities are in canonical units (outer-eye-corner distance = 1); the mouth
opening ``o_t`` is the distance between inner-lip midpoints (landmarks 13 and 14).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..data.visemes import BILABIALS, OPEN_VOWELS
from ..face.geometry import mouth_opening

MAX_LAG = 5


def _symbol(symbol: str) -> str:
    return symbol.lstrip("',%")


def centre_frames(phonemes: Sequence[Sequence], symbols: frozenset[str] | set[str], fps: float,
                  num_frames: int) -> np.ndarray:
    """Frame indices of the centres of the phonemes ``[symbol, start_s, end_s]`` whose symbol is in ``symbols``."""
    frames = [int((start + end) / 2 * fps) for symbol, start, end in phonemes if _symbol(symbol) in symbols]
    return np.array([f for f in frames if 0 <= f < num_frames], dtype=int)


def rmse(predicted: np.ndarray, target: np.ndarray) -> float:
    """``sqrt(mean((v̂ − v)²))`` over frames, vertices and xyz. ``(T, V, 3)`` each."""
    return float(np.sqrt(np.mean((np.asarray(predicted) - np.asarray(target)) ** 2)))


def bilabial_counts(predicted_opening: np.ndarray, true_opening: np.ndarray, phonemes, fps: float = 25.0,
                    bilabials: frozenset[str] = BILABIALS, open_vowels: frozenset[str] = OPEN_VOWELS
                    ) -> tuple[int, int]:
    """``(closed, total)`` m/b/p centres of one utterance with ``ô ≤ τ``, ``τ = 0.25·median(o at open vowels)``.

    An utterance without open vowels or without bilabials counts ``(0, 0)``. The phone sets default to
    espeak's symbols; pass others for another inventory (e.g. ARPAbet from a forced alignment).
    """
    num_frames = min(len(predicted_opening), len(true_opening))
    bilabials = centre_frames(phonemes, bilabials, fps, num_frames)
    vowels = centre_frames(phonemes, open_vowels, fps, num_frames)
    if len(bilabials) == 0 or len(vowels) == 0:
        return 0, 0
    threshold = 0.25 * float(np.median(true_opening[vowels]))
    return int((predicted_opening[bilabials] <= threshold).sum()), len(bilabials)


def best_lag(predicted_opening: np.ndarray, true_opening: np.ndarray, max_lag: int = MAX_LAG) -> int:
    """The lag in ``[−max_lag, max_lag]`` maximising Pearson(ô shifted by lag, o); positive = ô late."""
    count = min(len(predicted_opening), len(true_opening))
    predicted, true = predicted_opening[:count], true_opening[:count]
    best, best_correlation = 0, -np.inf
    for lag in range(-max_lag, max_lag + 1):
        if lag >= 0:
            a, b = predicted[lag:], true[:count - lag]
        else:
            a, b = predicted[:count + lag], true[-lag:]
        if len(a) < 3 or a.std() == 0 or b.std() == 0:
            continue
        correlation = float(np.corrcoef(a, b)[0, 1])
        tie = abs(correlation - best_correlation) <= 1e-12
        if correlation > best_correlation + 1e-12 or (tie and abs(lag) < abs(best)):
            best, best_correlation = lag, correlation
    return best


def silence_jitter(predicted_vertices: np.ndarray, phonemes, fps: float = 25.0) -> tuple[float, int]:
    """``(sum, count)`` of ``‖v̂_{t+1} − 2v̂_t + v̂_{t−1}‖`` over interior frames with no phoneme."""
    num_frames = len(predicted_vertices)
    speaking = np.zeros(num_frames, bool)
    for _, start, end in phonemes:
        speaking[max(int(start * fps), 0):min(int(np.ceil(end * fps)), num_frames)] = True
    frames = [t for t in range(1, num_frames - 1) if not speaking[t]]
    if not frames:
        return 0.0, 0
    v = np.asarray(predicted_vertices, np.float64)
    acceleration = v[2:] - 2 * v[1:-1] + v[:-2]                                 # (T-2, V, 3)
    norms = np.linalg.norm(acceleration.reshape(len(acceleration), -1), axis=1)
    return float(norms[np.array(frames) - 1].sum()), len(frames)


@dataclass
class UtteranceResult:
    """Per-utterance pieces that pool into :func:`pool_results`."""

    squared_error_sum: float
    squared_error_count: int
    closed: int
    bilabials: int
    truth_closed: int  # the same rule applied to the ground truth: the corpus's ceiling
    lag: int
    jitter_sum: float
    jitter_count: int
    frames: int


def evaluate_utterance(predicted_vertices: np.ndarray, true_vertices: np.ndarray, phonemes,
                       fps: float = 25.0) -> UtteranceResult:
    """All a2e metrics' ingredients for one utterance. Vertices ``(T, V, 3)`` canonical."""
    count = min(len(predicted_vertices), len(true_vertices))
    predicted, true = np.asarray(predicted_vertices[:count]), np.asarray(true_vertices[:count])
    predicted_opening, true_opening = mouth_opening(predicted), mouth_opening(true)
    closed, bilabials = bilabial_counts(predicted_opening, true_opening, phonemes, fps)
    truth_closed, _ = bilabial_counts(true_opening, true_opening, phonemes, fps)
    jitter_sum, jitter_count = silence_jitter(predicted, phonemes, fps)
    return UtteranceResult(float(((predicted - true) ** 2).sum()), int(predicted.size), closed, bilabials,
                           truth_closed, best_lag(predicted_opening, true_opening), jitter_sum, jitter_count, count)


def pool_results(results: Sequence[UtteranceResult]) -> dict:
    """Pooled figures over a test split (RMSE over all frames, closure rate over all bilabials)."""
    lags = np.array([r.lag for r in results])
    squared = sum(r.squared_error_sum for r in results)
    count = sum(r.squared_error_count for r in results)
    bilabials = sum(r.bilabials for r in results)
    jitter_count = sum(r.jitter_count for r in results)
    return {
        "rmse": float(np.sqrt(squared / max(count, 1))),
        "bilabial_closure": sum(r.closed for r in results) / bilabials if bilabials else float("nan"),
        "bilabials": bilabials,
        "bilabial_closure_ground_truth": (sum(r.truth_closed for r in results) / bilabials if bilabials
                                          else float("nan")),
        "av_offset_frames": float(np.abs(lags).mean()) if len(lags) else float("nan"),
        "av_offset_mean_signed": float(lags.mean()) if len(lags) else float("nan"),
        "lag0_fraction": float((lags == 0).mean()) if len(lags) else float("nan"),
        "silence_jitter": sum(r.jitter_sum for r in results) / jitter_count if jitter_count else float("nan"),
        "frames": sum(r.frames for r in results),
        "utterances": len(results),
    }
