"""wav2vec 2.0 / HuBERT front end: hidden states of a frozen ``transformers`` speech encoder.

Any checkpoint that ``AutoFeatureExtractor`` + ``AutoModel`` load (Wav2Vec2, HuBERT, by Hub id or
local path; a ``...ForCTC`` checkpoint loads with its head, whose logits are ignored). The encoder's
hidden states come at 50 Hz (one per 20 ms, total conv stride 320); hidden state ``layer`` of
``output_hidden_states`` (0 = the input embeddings, -1 = the last layer) is averaged over the two
20 ms steps of each 40 ms video frame → ``(num_frames, hidden_size)``. The model is loaded on the
first call; ``feature_dim`` reads only the model's config.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from memface_hub.errors import MemFaceInputError

from .base import AudioFrontEnd, frames_per_video_frame

logger = logging.getLogger(__name__)

STEPS_PER_VIDEO_FRAME = 2  # 50 Hz encoder steps / 25 fps
WAV2VEC2_MODEL = "facebook/wav2vec2-base-960h"
WAV2VEC2_REVISION = "22aad52d435eb6dbaf354bdad9b0da84ce7d6156"   # the pinned commit of WAV2VEC2_MODEL
# Hub checkpoints (and their pinned revisions) a front-end config read from an artifact may name; a front
# end built in Python may use any checkpoint (a local folder too), always loaded from safetensors only.
SPEECH_MODEL_REVISIONS = {WAV2VEC2_MODEL: WAV2VEC2_REVISION}


def load_speech_config(model_name_or_path: str):
    """``transformers.AutoConfig`` of a checkpoint (no weights); a failure is a :class:`MemFaceInputError`."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(model_name_or_path, revision=SPEECH_MODEL_REVISIONS.get(model_name_or_path))
    except (OSError, ValueError) as err:
        raise MemFaceInputError(
            f"model_name_or_path={model_name_or_path!r}",
            f"cannot load the model config ({err}); offline, pass a local folder "
            "or a model already in the Hugging Face cache",
        ) from None


class SpeechEncoder:
    """A frozen ``transformers`` speech model and its feature extractor, loaded on first use.

    ``head="ctc"`` loads ``AutoModelForCTC``; ``head="auto"`` loads ``AutoModelForCTC`` for a
    ``...ForCTC`` checkpoint (so no head weights are left over) and ``AutoModel`` otherwise.
    Loading is guarded by a lock, so front ends can be shared between threads.
    """

    def __init__(self, model_name_or_path: str, device: str = "cpu", head: str = "auto"):
        if not isinstance(model_name_or_path, str) or not model_name_or_path:
            raise ValueError(f"model_name_or_path must be a non-empty string, got {model_name_or_path!r}")
        self.model_name_or_path = model_name_or_path
        self.device = str(device)
        self.head = head
        self._config = None
        self._feature_extractor = None
        self._model = None
        self._lock = threading.Lock()

    @property
    def config(self):
        """The checkpoint's config (no weights are loaded)."""
        if self._config is None:
            self._config = load_speech_config(self.model_name_or_path)
        return self._config

    @property
    def is_loaded(self) -> bool:
        return self._model is not None

    def _load(self):
        with self._lock:
            if self._model is None:
                import torch
                from transformers import AutoFeatureExtractor, AutoModel, AutoModelForCTC

                revision = SPEECH_MODEL_REVISIONS.get(self.model_name_or_path)     # None: a local folder
                logger.info("loading %s (revision %s)", self.model_name_or_path, revision or "as found")
                architectures = self.config.architectures or []
                ctc = self.head == "ctc" or any(name.endswith("ForCTC") for name in architectures)
                try:
                    self._feature_extractor = AutoFeatureExtractor.from_pretrained(self.model_name_or_path,
                                                                                   revision=revision)
                    model = (AutoModelForCTC if ctc else AutoModel).from_pretrained(
                        self.model_name_or_path, revision=revision, use_safetensors=True)   # never a pickle
                except (OSError, ValueError) as err:
                    raise MemFaceInputError(f"model_name_or_path={self.model_name_or_path!r}",
                                            f"cannot load safetensors weights ({err})") from None
                model.requires_grad_(False)
                self._model = model.eval().to(torch.device(self.device))
        return self._feature_extractor, self._model

    def __call__(self, audio: np.ndarray, sampling_rate: int, **model_kwargs):
        """Run the model on 16 kHz float audio ``(samples,)`` under ``inference_mode``; returns its outputs."""
        import torch

        feature_extractor, model = self._load()
        inputs = feature_extractor(audio, sampling_rate=sampling_rate, return_tensors="pt")
        inputs = {key: value.to(model.device) for key, value in inputs.items()}
        with torch.inference_mode():
            return model(**inputs, **model_kwargs)


class Wav2Vec2FrontEnd(AudioFrontEnd):
    """Frozen speech-encoder hidden states ``(num_frames, hidden_size)`` at 25 fps."""

    name = "wav2vec2"

    def __init__(self, model_name_or_path: str = WAV2VEC2_MODEL, layer: int = -1,
                 device: str = "cpu", resample: bool = False):
        super().__init__(resample=resample)
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise ValueError(f"layer must be an integer, got {layer!r}")
        self.encoder = SpeechEncoder(model_name_or_path, device, head="auto")
        self.model_name_or_path = model_name_or_path
        self.layer = layer
        self.device = str(device)

    @property
    def feature_dim(self) -> int:
        return int(self.encoder.config.hidden_size)

    @property
    def num_layers(self) -> int:
        """Number of hidden-state outputs: transformer layers + 1 (the input embeddings)."""
        return int(self.encoder.config.num_hidden_layers) + 1

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "model_name_or_path": self.model_name_or_path, "layer": self.layer,
                "device": self.device, "resample": self.resample}

    def hidden_states(self, audio: np.ndarray) -> np.ndarray:
        """Hidden state ``layer`` for 16 kHz float audio ``(samples,)`` → ``(steps, hidden_size)`` at 50 Hz."""
        if not -self.num_layers <= self.layer < self.num_layers:
            raise ValueError(f"layer={self.layer} is out of range: {self.model_name_or_path!r} has "
                             f"{self.num_layers} hidden states (layers -{self.num_layers}..{self.num_layers - 1})")
        outputs = self.encoder(audio, self.sampling_rate, output_hidden_states=True)
        return outputs.hidden_states[self.layer][0].float().cpu().numpy()  # (steps, hidden_size)

    def _extract(self, audio: np.ndarray, num_frames: int) -> np.ndarray:
        states = self.hidden_states(audio)  # (steps, D) at 50 Hz
        pairs = frames_per_video_frame(states, STEPS_PER_VIDEO_FRAME, num_frames)  # (num_frames, 2, D)
        return pairs.mean(axis=1).astype(np.float32)
