"""Learned phone-posterior front end: a small convolutional network trained here, offline.

A log-mel spectrogram (80 bins, 100 Hz, normalised per utterance, as the ``mel`` front end) goes
through a stack of dilated 1-D convolutions (``PhoneNet``, about 0.7 M parameters, receptive
field ±340 ms) to per-10 ms posteriors over :data:`PHONE_CLASSES` (espeak-ng's phoneme mnemonics
without stress marks, plus silence). The four posteriors of each 40 ms video frame are stacked, so
``feature_dim = 4 * len(PHONE_CLASSES)``.

It is trained (:mod:`memface_hub.training.train_phone_net`) on the synthetic corpus's TTS audio, whose
phoneme timings espeak-ng reports, with augmentation towards real recordings (noise, reverberation,
speed and pitch, band-limiting, gain). Unlike ``phonemes`` (pocketsphinx's hard best path), its
output is soft and differentiable in spirit: a frame between two phones shares its weight.

Weights: the package's bundled ``assets/phone_net`` (the only weights an artifact may name, pinned by
their sha256), or any folder in Python (``PhoneNetFrontEnd(model_path=...)``) for experiments.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MemFaceInputError
from .base import AudioFrontEnd, frames_per_video_frame
from .mel import FRAMES_PER_VIDEO_FRAME, normalised_log_mel

BUNDLED = Path(__file__).resolve().parents[1] / "assets" / "phone_net"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
SILENCE = "sil"
# espeak-ng en phoneme mnemonics (stress marks stripped; see data.visemes) + silence. A constant, so the
# feature layout never depends on which weights are loaded.
PHONE_CLASSES = (
    "0", "3", "3:", "@", "@-", "@2", "@L", "@U", "A", "A:", "A@", "D", "E", "I", "I#", "I2", "I@", "N", "O", "O2",
    "O:", "O@", "OI", "S", "T", "U", "U@", "V", "Z", "a", "a#", "aI", "aI3", "aI@", "aU", "aU@", "aa", "b", "d",
    "dZ", "e", "e@", "eI", "f", "g", "h", "i", "i:", "i@", "i@3", "j", "k", "l", "m", "n", "n-", "o@", "oU", "p",
    "r", "r-", "s", "t", "t#", "t2", "tS", "u:", "v", "w", "z", SILENCE,
)  # fmt: skip
CLASS_INDEX = {name: index for index, name in enumerate(PHONE_CLASSES)}
N_MELS = 80


def phone_class(symbol: str) -> int:
    """Class index of an espeak-ng phoneme symbol: stress stripped, digits/markers dropped if unknown,
    pauses and anything unknown → silence."""
    symbol = symbol.lstrip("',%=")
    if symbol in CLASS_INDEX:
        return CLASS_INDEX[symbol]
    base = symbol.rstrip("0123456789#/-")
    return CLASS_INDEX.get(base, CLASS_INDEX[SILENCE])


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_phone_net(channels: int = 160, blocks: int = 5, kernel: int = 5, num_classes: int = len(PHONE_CLASSES)):
    """The network: ``(B, 80, T)`` normalised log-mel → ``(B, num_classes, T)`` logits (same ``T``)."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, dilation: int):
            super().__init__()
            self.conv = nn.Conv1d(channels, channels, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation)
            self.norm = nn.GroupNorm(1, channels)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + torch.nn.functional.gelu(self.norm(self.conv(x)))

    class PhoneNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.config = {"channels": channels, "blocks": blocks, "kernel": kernel, "num_classes": num_classes}
            self.inp = nn.Conv1d(N_MELS, channels, kernel, padding=(kernel - 1) // 2)
            self.blocks = nn.Sequential(*[Block(2 ** (index % 4)) for index in range(blocks)])
            self.out = nn.Conv1d(channels, num_classes, 1)

        def forward(self, mel: torch.Tensor) -> torch.Tensor:
            return self.out(self.blocks(torch.nn.functional.gelu(self.inp(mel))))

    return PhoneNet()


def save_phone_net(model, folder: str | Path) -> str:
    """Write ``config.json`` + ``model.safetensors`` to ``folder`` (atomically); returns the weights' sha256."""
    from safetensors.torch import save_file

    from ..arrays_io import write_text_atomic

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{WEIGHTS_FILE}.tmp"
    save_file({key: value.detach().float().contiguous() for key, value in model.state_dict().items()}, str(temporary))
    temporary.replace(folder / WEIGHTS_FILE)
    write_text_atomic(folder / CONFIG_FILE, json.dumps({**model.config, "classes": list(PHONE_CLASSES)}, indent=1))
    return file_sha256(folder / WEIGHTS_FILE)


def load_phone_net(folder: str | Path):
    """The network from a folder written by :func:`save_phone_net`; refused in one line if malformed."""
    import torch

    from ..arrays_io import load_arrays

    folder = Path(folder)
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise MemFaceInputError(folder / CONFIG_FILE,
                                f"cannot read the phone_net config ({type(err).__name__})") from None
    if not isinstance(config, dict) or config.get("classes") != list(PHONE_CLASSES):
        raise MemFaceInputError(folder / CONFIG_FILE, "not a phone_net config for this package's phone classes")
    sizes = {key: config.get(key) for key in ("channels", "blocks", "kernel")}
    if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1024 for v in sizes.values()):
        raise MemFaceInputError(folder / CONFIG_FILE,
                                f"channels, blocks and kernel must be integers in [1, 1024], got {sizes}")
    if sizes["kernel"] % 2 == 0:
        raise MemFaceInputError(folder / CONFIG_FILE, f"kernel must be odd, got {sizes['kernel']}")
    model = build_phone_net(**sizes)
    state = {key: torch.from_numpy(value) for key, value in load_arrays(folder / WEIGHTS_FILE).items()}
    expected = model.state_dict()
    if set(state) != set(expected) or any(state[k].shape != expected[k].shape or state[k].dtype != expected[k].dtype
                                          for k in expected):
        raise MemFaceInputError(folder / WEIGHTS_FILE, "weights do not match the phone_net config")
    model.load_state_dict(state)
    return model.eval()


class PhoneNetFrontEnd(AudioFrontEnd):
    """Stacked phone posteriors ``(num_frames, 4 * len(PHONE_CLASSES))`` from a :class:`PhoneNet`.

    ``model_path``: a folder of :func:`save_phone_net` (default ``None``: the bundled weights);
    ``weights_sha256``: when given, the weights must have exactly this hash (an a2e model records the
    hash of the weights it was trained with, so features never silently change under it).
    """

    name = "phone_net"

    def __init__(self, model_path: str | None = None, weights_sha256: str | None = None, resample: bool = False):
        super().__init__(resample=resample)
        self.model_path = None if model_path is None else str(model_path)
        folder = Path(self.model_path) if self.model_path is not None else BUNDLED
        if not (folder / WEIGHTS_FILE).is_file():
            raise MemFaceInputError(folder, "no phone_net weights (model.safetensors) in this folder")
        actual = file_sha256(folder / WEIGHTS_FILE)
        if weights_sha256 is not None and weights_sha256 != actual:
            raise MemFaceInputError(folder / WEIGHTS_FILE, f"phone_net weights have sha256 {actual[:12]}…, but "
                                    f"{weights_sha256[:12]}… was asked for (features made with other weights)")
        self.weights_sha256 = actual
        self._folder = folder
        self._model = None
        self._lock = threading.Lock()

    @property
    def feature_dim(self) -> int:
        return FRAMES_PER_VIDEO_FRAME * len(PHONE_CLASSES)

    def config(self) -> dict[str, Any]:
        config = {"name": self.name, "weights_sha256": self.weights_sha256, "resample": self.resample}
        if self.model_path is not None:
            config["model_path"] = self.model_path
        return config

    def model(self):
        with self._lock:
            if self._model is None:
                self._model = load_phone_net(self._folder)
            return self._model

    def posteriors(self, audio: np.ndarray) -> np.ndarray:
        """Per-10 ms phone posteriors ``(1 + samples // 160, len(PHONE_CLASSES))`` float32 of 16 kHz audio."""
        import torch

        mel = normalised_log_mel(audio, self.sampling_rate, N_MELS)                      # (T, 80)
        with torch.inference_mode():
            logits = self.model()(torch.from_numpy(np.ascontiguousarray(mel.T))[None])  # (1, C, T)
            return torch.softmax(logits[0].float(), dim=0).T.contiguous().numpy()

    def _extract(self, audio: np.ndarray, num_frames: int) -> np.ndarray:
        stacked = frames_per_video_frame(self.posteriors(audio), FRAMES_PER_VIDEO_FRAME, num_frames)  # (N, 4, C)
        return stacked.reshape(num_frames, self.feature_dim).astype(np.float32)
