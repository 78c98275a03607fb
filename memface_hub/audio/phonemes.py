"""Phoneme posteriorgram front end: pocketsphinx allphone decoding, offline and speaker-independent.

pocketsphinx's wheel bundles an en-us acoustic model and a phone language model, so phone
recognition works without any download. The decoder's best phone sequence (``Decoder.seg()``,
10 ms frames) becomes a one-hot 100 Hz posteriorgram over :data:`PHONES` (the 39 CMU phones + SIL;
noise and unknown segments such as ``+NSN+``/``+SPN+`` count as SIL), smoothed in time with a
Gaussian of ``smoothing_frames`` (in 10 ms frames) and averaged over the four 10 ms frames of each
video frame → ``(num_frames, 40)``; each row sums to 1.

The phone inventory is a constant so that ``feature_dim`` and the column order never depend on which
model files are installed; :func:`model_phones` reads the bundled model's list, and the decoder logs
a warning if that model knows phones outside :data:`PHONES`.
"""

from __future__ import annotations

import logging
import struct
import threading
from pathlib import Path
from typing import Any

import numpy as np

from .base import AudioFrontEnd, frames_per_video_frame

logger = logging.getLogger(__name__)

# The CMU phone set (ARPAbet, no stress) as used by pocketsphinx's en-us model, plus silence.
CMU_PHONES = (
    "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH",
    "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW", "V",
    "W", "Y", "Z", "ZH",
)  # fmt: skip
SILENCE = "SIL"
PHONES = CMU_PHONES + (SILENCE,)
NOISE_PHONES = ("+NSN+", "+SPN+")  # pocketsphinx's noise fillers; mapped to SIL
FRAMES_PER_VIDEO_FRAME = 4  # pocketsphinx frames are 10 ms
PAD_SECONDS = 0.3  # silence added around the utterance: the decoder's noise/CMN estimates need a lead-in
SAMPLES_PER_FRAME = 160


def default_model_dir() -> Path:
    """Folder of pocketsphinx's bundled en-us acoustic model."""
    from pocketsphinx import get_model_path

    return Path(get_model_path("en-us/en-us"))


def model_phones(model_dir: str | Path | None = None) -> tuple[str, ...]:
    """The context-independent phones of a pocketsphinx acoustic model, read from its binary ``mdef``.

    The file is a text description that ends with ``END FILE FORMAT DESCRIPTION\\n``, NUL padding to a
    4-byte boundary, 10 int32 counts (the first is the number of CI phones) and the CI phone names as
    NUL-terminated strings.
    """
    data = (Path(model_dir or default_model_dir()) / "mdef").read_bytes()
    marker = b"END FILE FORMAT DESCRIPTION\n"
    position = data.find(marker)
    if position < 0:
        raise ValueError("not a binary pocketsphinx mdef file (no format description)")
    position += len(marker)
    position += -position % 4  # NUL padding to a 4-byte boundary
    for byte_order in ("<", ">"):
        (count,) = struct.unpack_from(f"{byte_order}i", data, position)
        if 0 < count < 1000:
            break
    else:
        raise ValueError("cannot read the phone count of the mdef file")
    names = data[position + 40:].split(b"\0", count)[:count]
    return tuple(name.decode("ascii") for name in names)


class PhonemeFrontEnd(AudioFrontEnd):
    """Smoothed pocketsphinx phone posteriorgram ``(num_frames, len(PHONES))``; rows sum to 1.

    The decoder is created on first use (about 0.1 s) and reused; calls are serialised by a lock and
    the feature state is reset before each utterance, so results do not depend on earlier calls.
    """

    name = "phonemes"

    def __init__(self, resample: bool = False, smoothing_frames: float = 1.0):
        super().__init__(resample=resample)
        if isinstance(smoothing_frames, bool) or not isinstance(smoothing_frames, (int, float)) \
                or not np.isfinite(smoothing_frames) or smoothing_frames < 0:
            raise ValueError(f"smoothing_frames must be a finite number >= 0, got {smoothing_frames!r}")
        self.smoothing_frames = float(smoothing_frames)
        self._decoder = None
        self._lock = threading.Lock()

    @property
    def feature_dim(self) -> int:
        return len(PHONES)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "resample": self.resample, "smoothing_frames": self.smoothing_frames}

    def _get_decoder(self):
        """The pocketsphinx allphone decoder (call with ``self._lock`` held)."""
        if self._decoder is None:
            from pocketsphinx import Decoder, get_model_path

            unknown = set(model_phones()) - set(PHONES) - set(NOISE_PHONES)
            if unknown:
                logger.warning("pocketsphinx model phones %s are not in PHONES; they count as SIL", sorted(unknown))
            self._decoder = Decoder(
                allphone=get_model_path("en-us/en-us-phone.lm.bin"), lm=None, lw=2.0, pip=0.3,
                beam=1e-20, pbeam=1e-20, samprate=self.sampling_rate, loglevel="ERROR",
            )
        return self._decoder

    def decode(self, audio: np.ndarray) -> list[tuple[str, int, int]]:
        """Best phone sequence for 16 kHz float audio ``(samples,)``: ``(phone, start, end)`` in 10 ms
        frames from the audio start, ``end`` inclusive; phones outside :data:`PHONES` become ``"SIL"``."""
        pad = np.zeros(int(PAD_SECONDS * self.sampling_rate), np.float32)
        padded = np.concatenate([pad, audio, pad])
        pcm = (np.clip(padded, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
        pad_frames = len(pad) // SAMPLES_PER_FRAME
        with self._lock:
            decoder = self._get_decoder()
            decoder.reinit_feat()  # forget noise/CMN estimates from earlier utterances
            decoder.start_utt()
            decoder.process_raw(pcm, full_utt=True)
            decoder.end_utt()
            segments = [(seg.word, seg.start_frame, seg.end_frame) for seg in decoder.seg()]
        return [(phone if phone in PHONES else SILENCE, start - pad_frames, end - pad_frames)
                for phone, start, end in segments]

    def posteriorgram(self, audio: np.ndarray) -> np.ndarray:
        """Smoothed one-hot phone posteriorgram at 100 Hz: ``(ceil(samples / 160), len(PHONES))``."""
        num_steps = max(1, -(-len(audio) // SAMPLES_PER_FRAME))
        labels = np.full(num_steps, PHONES.index(SILENCE))  # (T,)
        for phone, start, end in self.decode(audio):
            labels[max(start, 0):max(end + 1, 0)] = PHONES.index(phone)
        posteriors = np.eye(len(PHONES), dtype=np.float32)[labels]  # (T, P)
        if self.smoothing_frames > 0:
            from scipy.ndimage import gaussian_filter1d

            posteriors = gaussian_filter1d(posteriors, self.smoothing_frames, axis=0, mode="nearest")
        return posteriors

    def _extract(self, audio: np.ndarray, num_frames: int) -> np.ndarray:
        posteriors = self.posteriorgram(audio)  # (T, P) at 100 Hz
        grouped = frames_per_video_frame(posteriors, FRAMES_PER_VIDEO_FRAME, num_frames)  # (num_frames, 4, P)
        return grouped.mean(axis=1).astype(np.float32)
