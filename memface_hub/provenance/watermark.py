"""An invisible watermark in every generated frame, found again after re-encoding and rescaling.

Why our own and not ``invisible-watermark`` (the library diffusers uses for SDXL): its DWT-DCT method is
known not to survive resizing, its RivaGAN method needs ONNX models, and the wheel requires
``opencv-python``, which would sit beside the ``opencv-contrib-python`` that MediaPipe installs (two
packages writing the same ``cv2``). This one needs numpy and OpenCV only.

How it works (spread over DCT coefficients of luma, one quantised projection per bit):

1. The frame's luma ``Y`` is resized to a canonical ``128 × 128`` (whatever the frame's size or aspect),
   so a video scaled to half size maps onto the same canonical grid.
2. A band of low–mid frequencies of its 2-D DCT (``3 <= u + v <= 24``, 319 coefficients, 4–5 per bit, periods of
   1/12 to 2/3 of the frame: coarse enough for H.264 at CRF 30 and for halving the size) is split by a
   fixed key into 64 groups, one per channel bit, each with its own ±1 signs.
3. For bit ``i`` the frame's own projection ``x_i = mean_j(sign_j · D_j)`` is moved to the nearest point of
   that bit's lattice (dither modulation, a form of quantisation index modulation: ``k·step + dither_i`` for
   a 0, ``k·step + step/2 + dither_i`` for a 1, ``step`` = 32). The picture itself does not interfere with
   the bit (projections of real frames are ±50–150, far larger than any mark one could hide), and the change
   is at most ``step/2`` per coefficient (``0.75·step`` while a bit holds on to the previous frame's lattice
   point, which keeps the mark of a still shot from flickering). Projections are measured in units of the
   frame's contrast (luma standard deviation / 56), so the mark is stronger in busy, high-contrast pictures
   (luma PSNR about 42 dB) than in flat ones (about 48 dB), a slow ripple of ±1–4 levels, and a change of
   brightness, contrast, gamma or video range (16–235 ↔ 0–255) leaves the bits where they were.
4. The change is taken back to pixels (inverse DCT, bilinear upsampling to the frame size) and added
   equally to R, G and B, which changes luma only.

The 64 channel bits carry a 32-bit message (``"MF"``, format version, flags; flag 1: AI-generated) twice,
each copy scrambled by its own key (a rate-1/2 repetition code). Detection reads each frame's 64 bits
as soft votes (+1 on the lattice of a 1, −1 on that of a 0), takes a **majority vote over frames** for each
bit (the sign of the votes' sum), and counts how many of the 64
agree with the expected codeword. Without a watermark each bit agrees with probability 1/2, so
``p = P(Binomial(64, 1/2) >= agreeing)`` is the chance of a match that good by accident, and
``confidence = 1 - p``. A video counts as watermarked when at least :data:`MIN_AGREEING_BITS` (52 of 64,
``p ≈ 2e-7``) agree. The mark is read again after the projection noise of H.264 at CRF 30 or of
halving the size (typically 3–7 units against a margin of ``step/4`` = 8): a single frame is often wrong on
a few bits, the vote over frames is not.

Not survived: cropping, flipping or rotating (the canonical grid moves), re-encoding at far lower quality than
CRF 35 (CRF 40 is borderline), and anyone who knows this scheme and sets out to remove it. The key is public
(anyone can detect, and anyone who reads this file can also strip or forge the mark): it labels honest outputs,
it does not stop a determined forger. That is what the signed C2PA
credentials (:mod:`.credentials`) are for, as long as the file is not re-encoded.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field

import cv2
import numpy as np

CANONICAL_SIZE = 128                     # frames are compared on this grid (pixels, both sides)
BAND = (3, 24)                           # DCT coefficients with BAND[0] <= u + v <= BAND[1] carry the mark
CHANNEL_BITS = 64
MESSAGE_BITS = 32
MAGIC = 0x4D46                           # "MF"
FORMAT_VERSION = 1
FLAG_AI_GENERATED = 1
MIN_AGREEING_BITS = 52                   # of 64: p ≈ 2e-7 for a video without the mark
KEY = 0x6D656D66                         # "memf": the public key that places the bits
REFERENCE_CONTRAST = 56.0                # projections are measured against a luma std of this many levels
MIN_CONTRAST = 8.0                       # ... and never against less (an almost flat frame)
DEFAULT_STEP = 32.0                      # quantisation step of a bit's projection (DCT units of 0–255 luma)


def _luma(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB → (H, W) float32 luma (BT.601)."""
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32) if frame.dtype == np.uint8 else \
        (frame[..., 0] * 0.299 + frame[..., 1] * 0.587 + frame[..., 2] * 0.114).astype(np.float32)


def _canonical(luma: np.ndarray) -> np.ndarray:
    """(H, W) → (N, N) float32, area-averaged when shrinking, bilinear when enlarging."""
    height, width = luma.shape
    shrinking = height >= CANONICAL_SIZE and width >= CANONICAL_SIZE
    return cv2.resize(luma, (CANONICAL_SIZE, CANONICAL_SIZE),
                      interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


@dataclass(frozen=True)
class _Layout:
    """Where the bits live: ``rows, cols`` (M,) the band's coefficients, ``group`` (M,) the channel bit each
    carries, ``sign`` (M,) ±1, ``codeword`` (64,) ±1 the expected channel bits."""

    rows: np.ndarray
    cols: np.ndarray
    group: np.ndarray
    sign: np.ndarray
    codeword: np.ndarray
    group_size: np.ndarray


def message_bits(flags: int = FLAG_AI_GENERATED) -> np.ndarray:
    """The 32-bit message (magic, version, flags), most significant bit first: (32,) 0/1."""
    value = (MAGIC << 16) | (FORMAT_VERSION << 8) | (flags & 0xFF)
    return np.array([(value >> (MESSAGE_BITS - 1 - i)) & 1 for i in range(MESSAGE_BITS)], np.int8)


def _scramblers() -> np.ndarray:
    """(2, 32) 0/1: the two copies' keyed scrambling sequences."""
    return np.random.default_rng(KEY + 1).integers(0, 2, (2, MESSAGE_BITS)).astype(np.int8)


def _layout(flags: int = FLAG_AI_GENERATED) -> _Layout:
    size = CANONICAL_SIZE
    u, v = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    band = (u + v >= BAND[0]) & (u + v <= BAND[1])
    rows, cols = u[band], v[band]                                          # (M,)
    rng = np.random.default_rng(KEY)
    order = rng.permutation(len(rows))
    rows, cols = rows[order], cols[order]
    group = np.arange(len(rows)) % CHANNEL_BITS                            # round robin: groups differ by ≤ 1
    sign = rng.choice(np.array([-1.0, 1.0], np.float32), len(rows))
    copies = message_bits(flags)[None, :] ^ _scramblers()                  # (2, 32) 0/1
    codeword = (copies.reshape(-1) * 2 - 1).astype(np.float32)             # (64,) ±1
    return _Layout(rows, cols, group, sign, codeword, np.bincount(group, minlength=CHANNEL_BITS))


_LAYOUT = _layout()


def _projections(canonical: np.ndarray, layout: _Layout = _LAYOUT) -> tuple[np.ndarray, float]:
    """(N, N) canonical luma → the 64 channel projections ``(64,)``, in units of the picture's contrast, and that
    contrast ``scale``. Each projection ``x_i = mean_j(sign_j · D_j)`` is divided by ``scale`` = the luma's standard
    deviation (at least :data:`MIN_CONTRAST`) / :data:`REFERENCE_CONTRAST`: a change of brightness does not move
    the band, a change of contrast or of video range (16–235 ↔ 0–255) scales both alike, so the bits stay put."""
    coefficients = cv2.dct(canonical)
    values = coefficients[layout.rows, layout.cols] * layout.sign          # (M,)
    scale = max(float(canonical.std()), MIN_CONTRAST) / REFERENCE_CONTRAST
    return np.bincount(layout.group, values, CHANNEL_BITS) / layout.group_size / scale, scale


def _dither() -> np.ndarray:
    """(64,) keyed offsets of the bits' quantisation lattices, in units of the step."""
    return np.random.default_rng(KEY + 2).uniform(0.0, 1.0, CHANNEL_BITS).astype(np.float32)


_DITHER = _dither()


def _soft_bits(projections: np.ndarray, step: float) -> np.ndarray:
    """Channel bits read off projections ``(..., 64)`` as soft votes in [−1, 1]: +1 on the lattice of a
    1 (``k·step + step/2 + dither``), −1 on that of a 0 (``k·step + dither``), 0 half way between."""
    return (-np.cos(2 * np.pi * (projections / step - _DITHER))).astype(np.float32)


@dataclass
class Watermarker:
    """Adds the mark to the frames of one video: ``mark = Watermarker(); frame = mark(frame)``, (H, W, 3) uint8 RGB
    in and out, frames in order (use a new one per video).

    ``step`` is the quantisation step of each bit's projection (larger: more robust, more visible); ``refine``
    extra passes correct for what the resizing to the frame's size and the rounding to uint8 took away.
    ``hold``: a bit keeps the lattice point it used in the previous frame while that needs a push of at most
    ``hold · step`` (instead of jumping to the nearest point, which may lie on the other side as the picture
    drifts), so in a still shot the mark does not flicker from frame to frame; otherwise the push is at most
    ``step / 2`` per coefficient.
    """

    step: float = DEFAULT_STEP
    refine: int = 1
    hold: float = 0.75
    _previous: np.ndarray | None = field(default=None, init=False, repr=False)   # (64,) last frame's pushes

    def __post_init__(self):
        if self.step <= 0 or self.refine < 0 or not 0.5 <= self.hold < 1.0:
            raise ValueError(f"need step > 0, refine >= 0 and 0.5 <= hold < 1, got step={self.step}, "
                             f"refine={self.refine}, hold={self.hold}")

    def push(self, projections: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
        """How far each bit's projection ``(64,)`` must move to sit on its bit's lattice: the point nearest to
        where the previous frame's push would take it (while within ``hold · step``), else the nearest one."""
        offset = (_DITHER + (_LAYOUT.codeword > 0) * 0.5) * self.step              # (64,)

        def to_lattice(anchor: np.ndarray) -> np.ndarray:
            return np.round((anchor - offset) / self.step) * self.step + offset - projections

        nearest = to_lattice(projections)                                           # |nearest| <= step / 2
        if previous is None:
            return nearest.astype(np.float32)
        held = to_lattice(projections + previous)
        return np.where(np.abs(held) <= self.hold * self.step, held, nearest).astype(np.float32)

    @staticmethod
    def _change(push: np.ndarray) -> np.ndarray:
        """Pushes (64,) → the luma change at canonical size (N, N): every coefficient of bit i moves by the
        bit's full push (the projection is their signed mean)."""
        layout = _LAYOUT
        change = np.zeros((CANONICAL_SIZE, CANONICAL_SIZE), np.float32)
        change[layout.rows, layout.cols] = push[layout.group] * layout.sign
        return cv2.idct(change)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frame must be (H, W, 3) uint8 RGB, got {frame.shape} {frame.dtype}")
        height, width = frame.shape[:2]
        canonical = _canonical(_luma(frame))                                       # (N, N)
        projections, scale = _projections(canonical)                               # (64,) in contrast units
        pushes = self.push(projections, self._previous)                            # (64,)
        change = self._change(pushes * scale)                                      # (N, N) luma levels
        for _ in range(self.refine):   # what reaches the canonical grid after upsampling, and fix the rest
            seen = _canonical(cv2.resize(change, (width, height), interpolation=cv2.INTER_LINEAR))
            projections, scale = _projections(canonical + seen)
            extra = self.push(projections)
            change, pushes = change + self._change(extra * scale), pushes + extra
        self._previous = pushes
        change = cv2.resize(change, (width, height), interpolation=cv2.INTER_LINEAR)  # (H, W)
        change = np.rint(change).astype(np.int16)[..., None]                       # (H, W, 1) whole levels
        return np.clip(frame.astype(np.int16) + change, 0, 255).astype(np.uint8)


def frame_projections(frames) -> np.ndarray:
    """Channel projections of each frame: iterable of (H, W, 3) uint8 → (T, 64) float32."""
    return np.stack([_projections(_canonical(_luma(frame)))[0] for frame in frames]).astype(np.float32)


def _binomial_tail(agreeing: int, bits: int = CHANNEL_BITS) -> float:
    """P(Binomial(bits, 1/2) >= agreeing)."""
    return sum(math.comb(bits, k) for k in range(agreeing, bits + 1)) / 2.0 ** bits


@dataclass
class WatermarkResult:
    """What :func:`detect_watermark` found.

    ``detected``: at least :data:`MIN_AGREEING_BITS` of the 64 channel bits, each a (soft) majority over frames,
    agree with the codeword; ``confidence`` = 1 − ``p_value`` (the chance of that many agreeing in an
    unmarked video); ``frames_detected``: the fraction of frames that pass the same test on their own;
    ``message``: the decoded 32-bit message's fields when detected."""

    detected: bool
    confidence: float
    p_value: float
    agreeing_bits: int
    frames: int
    frames_detected: float
    message: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"detected": self.detected, "confidence": self.confidence, "p_value": self.p_value,
                "agreeing_bits": self.agreeing_bits, "channel_bits": CHANNEL_BITS, "frames": self.frames,
                "frames_detected": self.frames_detected, "message": self.message}


def detect_in_projections(projections: np.ndarray, step: float = DEFAULT_STEP) -> WatermarkResult:
    """Decide from per-frame channel projections ``(T, 64)`` (:func:`frame_projections`)."""
    layout = _LAYOUT
    projections = np.asarray(projections, np.float32).reshape(-1, CHANNEL_BITS)
    if len(projections) == 0:
        raise ValueError("no frames to look for a watermark in")
    soft = _soft_bits(projections, step)                                    # (T, 64) per-frame soft votes
    votes = soft.sum(axis=0)                                                # (64,) the vote over frames
    agreeing = int((np.sign(votes) == layout.codeword).sum())               # a tie (0) counts as wrong
    per_frame = (np.sign(soft) == layout.codeword).sum(axis=1) >= MIN_AGREEING_BITS
    p_value = _binomial_tail(agreeing)
    detected = agreeing >= MIN_AGREEING_BITS
    message = {}
    if detected:   # descramble both copies of the message and add their votes
        copies = votes.reshape(2, MESSAGE_BITS) * (1 - 2 * _scramblers())   # (2, 32): + for a 1, − for a 0
        bits = (copies.sum(axis=0) > 0).astype(int)
        value = int("".join(map(str, bits)), 2)
        message = {"magic_ok": (value >> 16) == MAGIC, "version": (value >> 8) & 0xFF,
                   "ai_generated": bool(value & FLAG_AI_GENERATED)}
    return WatermarkResult(detected, 1.0 - p_value, p_value, agreeing, len(projections), float(per_frame.mean()),
                           message)


def detect_watermark(frames) -> WatermarkResult:
    """Look for the mark in frames: iterable of (H, W, 3) uint8 RGB (any size)."""
    return detect_in_projections(frame_projections(frames))


def detect_watermark_in_video(path: str | os.PathLike, max_frames: int | None = 250) -> WatermarkResult:
    """Look for the mark in a video file: its first ``max_frames`` frames (None: all), decoded by ffmpeg
    straight to a small size (only the canonical grid is read)."""
    import imageio_ffmpeg

    from ..errors import MemFaceInputError
    from ..io.media import probe

    info = probe(path)
    if not info.has_video:
        raise MemFaceInputError(path, "no video stream (audio only?)")
    side = 2 * CANONICAL_SIZE
    output_params = ["-vf", f"scale={side}:{side}:flags=area"]
    if max_frames is not None:
        output_params += ["-frames:v", str(int(max_frames))]
    logging.getLogger("imageio_ffmpeg").setLevel(logging.ERROR)   # it warns that the size differs: we asked
    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24", output_params=output_params)
    try:
        next(reader)
        frames = (np.frombuffer(buffer, np.uint8).reshape(side, side, 3) for buffer in reader)
        projections = [_projections(_canonical(_luma(frame)))[0] for frame in frames]
    except (RuntimeError, StopIteration) as err:
        raise MemFaceInputError(path, f"cannot decode video ({(str(err).splitlines() or [''])[0]})") from None
    finally:
        reader.close()
    if not projections:
        raise MemFaceInputError(path, "zero-length video (no frames decoded)")
    return detect_in_projections(np.stack(projections))
