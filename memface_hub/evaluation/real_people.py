"""Real-people metrics: generated video of a held-out person against their real video.

Both videos are re-tracked by the same face landmarker (nothing from the generator's internals),
then, per frame, on the 478-point mesh in image pixels:

* **lip gap** ``|p13 − p14| / |p10 − p152|`` (inner-lip opening over face height); the lip
  correlation is the Pearson correlation of the generated and the real sequence at lag 0, and the
  best lag in [−5, 5] frames;
* **lower-face colour**: mean CIE-Lab (L in 0–100) of the lower-face skin — the jaw polygon
  (:data:`LOWER_FACE_POLYGON`) minus the outer lips, below the nose tip — pooled over all frames;
  ΔE is the Euclidean distance (CIE76) of the generated and the real mean (≈ 2.3 is just noticeable);
* **mouth sharpness**: variance of the Laplacian of the grey outer-lip bounding box, divided by
  ``(box width / 64)²``; the ratio is the median over generated frames ÷ the median over real ones;
* **loudness baseline**: the lip correlation of the log RMS loudness of the audio per video frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..face.landmarks import CHIN, LOWER_INNER_LIP, NOSE_TIP, UPPER_INNER_LIP

FOREHEAD = 10
LOWER_FACE_POLYGON = (132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397,
                      288, 361, 323, 454, 1, 234, 93)
OUTER_LIP_POLYGON = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
MAX_LAG = 5
SHARPNESS_BOX_WIDTH = 64
ADAPT_SECONDS, ADAPT_FRACTION = 15.0, 0.7       # the protocol's cut: c = min(15 s, 0.7 × length)


def adaptation_cut(num_frames: int, fps: float) -> int:
    """The real-people protocol's cut in frames: the clip before it adapts, the clip from it on is the test."""
    return int(round(min(ADAPT_SECONDS, ADAPT_FRACTION * num_frames / fps) * fps))


def lip_gaps(landmarks: np.ndarray) -> np.ndarray:
    """``(T, 478, 2|3)`` pixel landmarks → ``(T,)`` inner-lip gap over face height."""
    landmarks = np.asarray(landmarks, np.float64)[..., :2]
    gap = np.linalg.norm(landmarks[:, UPPER_INNER_LIP] - landmarks[:, LOWER_INNER_LIP], axis=-1)
    height = np.linalg.norm(landmarks[:, FOREHEAD] - landmarks[:, CHIN], axis=-1)
    return gap / np.maximum(height, 1e-6)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two equal-length sequences; NaN when either is constant or too short."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 3 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


@dataclass
class LipCorrelation:
    """Correlation at lag 0, the best correlation over lags in [−5, 5], and that lag (frames;
    positive: the generated sequence lags behind the real one)."""

    at_zero: float
    best: float
    lag: int


def lip_correlation(generated: np.ndarray, real: np.ndarray, max_lag: int = MAX_LAG) -> LipCorrelation:
    """Lip correlation of two ``(T,)`` sequences (cut to the shorter one)."""
    count = min(len(generated), len(real))
    generated, real = np.asarray(generated[:count]), np.asarray(real[:count])
    best, best_lag = -np.inf, 0
    for lag in range(-max_lag, max_lag + 1):
        if lag >= 0:
            value = pearson(generated[lag:], real[:count - lag])
        else:
            value = pearson(generated[:count + lag], real[-lag:])
        if np.isfinite(value) and value > best:
            best, best_lag = value, lag
    return LipCorrelation(pearson(generated, real), float(best) if np.isfinite(best) else float("nan"), best_lag)


def loudness(waveform: np.ndarray, sample_rate: int, num_frames: int, fps: float = 25.0) -> np.ndarray:
    """Log RMS loudness ``(num_frames,)`` of ``waveform`` per video frame (40 ms at 25 fps)."""
    hop = sample_rate / fps
    values = np.empty(num_frames)
    for index in range(num_frames):
        window = np.asarray(waveform[int(round(index * hop)):int(round((index + 1) * hop))], np.float64)
        values[index] = np.log(np.sqrt(np.mean(window ** 2)) + 1e-5) if window.size else np.log(1e-5)
    return values


def lower_face_mask(landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` bool: the lower-face skin of one frame (jaw polygon minus lips, below the nose tip)."""
    points = np.asarray(landmarks, np.float64)[:, :2]
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(points[list(LOWER_FACE_POLYGON)]).astype(np.int32)], 1)
    cv2.fillPoly(mask, [np.round(points[list(OUTER_LIP_POLYGON)]).astype(np.int32)], 0)
    mask[:max(0, int(np.ceil(points[NOSE_TIP, 1]))) + 1] = 0
    return mask.astype(bool)


class LabAccumulator:
    """Pools the CIE-Lab colour of lower-face skin pixels over frames (:meth:`add`), → :attr:`mean`."""

    def __init__(self):
        self.total = np.zeros(3)
        self.count = 0

    def add(self, frame: np.ndarray, landmarks: np.ndarray) -> None:
        mask = lower_face_mask(landmarks, frame.shape[:2])
        if not mask.any():
            return
        lab = cv2.cvtColor(frame.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)   # L in 0–100
        self.total += lab[mask].sum(axis=0)
        self.count += int(mask.sum())

    @property
    def mean(self) -> np.ndarray:
        if not self.count:
            raise ValueError("no lower-face pixels were seen")
        return self.total / self.count


def delta_e(lab_a: np.ndarray, lab_b: np.ndarray) -> float:
    """CIE76 colour difference of two Lab colours."""
    return float(np.linalg.norm(np.asarray(lab_a) - np.asarray(lab_b)))


def mouth_sharpness(frame: np.ndarray, landmarks: np.ndarray) -> float:
    """Laplacian variance of the grey outer-lip bounding box, normalised by ``(width / 64)²``;
    NaN when the box is degenerate."""
    points = np.asarray(landmarks, np.float64)[list(OUTER_LIP_POLYGON), :2]
    height, width = frame.shape[:2]
    x0, y0 = np.clip(np.floor(points.min(0)).astype(int), 0, [width, height])
    x1, y1 = np.clip(np.ceil(points.max(0)).astype(int) + 1, 0, [width, height])
    if x1 - x0 < 4 or y1 - y0 < 4:
        return float("nan")
    grey = cv2.cvtColor(np.ascontiguousarray(frame[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var() / ((x1 - x0) / SHARPNESS_BOX_WIDTH) ** 2)


@dataclass
class VideoStatistics:
    """Per-video figures for the comparison: lip gaps ``(T,)`` (NaN where no face), the pooled Lab
    mean of the lower face, the median mouth sharpness, and the fraction of frames with a face."""

    lip_gaps: np.ndarray
    lab_mean: np.ndarray
    sharpness: float
    tracked_fraction: float


def video_statistics(frames, tracker, total: int | None = None) -> VideoStatistics:
    """Track ``frames`` (an iterable of ``(H, W, 3)`` uint8 RGB; iterated twice if a list, so pass a
    list) and measure them."""
    frames = list(frames)
    track = tracker.track(frames, total=total or len(frames))
    colour, sharpness_values = LabAccumulator(), []
    for frame, points, found in zip(frames, track.landmarks, track.detected):
        if found:
            colour.add(frame, points)
            sharpness_values.append(mouth_sharpness(frame, points))
    gaps = lip_gaps(track.landmarks)
    gaps[~track.detected] = np.nan
    sharpness = float(np.nanmedian(sharpness_values)) if sharpness_values else float("nan")
    return VideoStatistics(gaps, colour.mean, sharpness, track.tracked_fraction)


def fill_missing(values: np.ndarray) -> np.ndarray:
    """Linear interpolation over NaNs (held at the ends), so a few untracked frames do not break a correlation."""
    values = np.asarray(values, np.float64).copy()
    missing = ~np.isfinite(values)
    if missing.all() or not missing.any():
        return values
    positions = np.flatnonzero(~missing)
    values[missing] = np.interp(np.flatnonzero(missing), positions, values[positions])
    return values


def compare_videos(generated: VideoStatistics, real: VideoStatistics) -> dict[str, float]:
    """ΔE, sharpness ratio and lip correlation of a generated video against the real one."""
    correlation = lip_correlation(fill_missing(generated.lip_gaps), fill_missing(real.lip_gaps))
    return {"delta_e": delta_e(generated.lab_mean, real.lab_mean),
            "sharpness_ratio": generated.sharpness / real.sharpness if real.sharpness > 0 else float("nan"),
            "lip_corr_0": correlation.at_zero, "lip_corr_best": correlation.best, "lip_lag": correlation.lag,
            "tracked_fraction": generated.tracked_fraction}
