"""MemFacePipeline: speech audio + a speaker memory → a talking video (inference only, docs/DESIGN.md §5).

Audio → front end → a2e (implicit memory) → mouth vertices → projected mouth on the speaker's
template frames (looped back and forth to cover the audio) → renderer with the speaker's explicit
memory → paste-back into the full frame → mp4 with the audio muxed in. Frames are made and written
in chunks, so memory stays flat however long the audio is.

Example::

    from memface_hub import MemFacePipeline, load_speaker

    pipe = MemFacePipeline.from_pretrained()            # bundled demo weights (or a Hub id / folder)
    speaker = load_speaker("demo")                       # bundled demo speaker (or a Hub id / folder)
    result = pipe.generate_to_file("speech.wav", speaker, "talking.mp4")
    print(result.num_frames, result.timings)

A pipeline repo holds ``model_index.json`` + ``a2e/`` + ``renderer/`` (each ``config.json`` +
``model.safetensors``) and a ``README.md`` card; only JSON and safetensors are ever read.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .a2e import A2E_DELTA_FILE, MemFaceAudioToExpression, a2e_fingerprint, apply_a2e_delta
from .arrays_io import atomic_folder
from .artifact_json import check_config, read_json_file
from .audio import build_frontend, check_artifact_frontend
from .audio.base import SILENCE_PEAK, AudioFrontEnd
from .errors import MemFaceInputError
from .face.crop import paste_back, transfer_detail, warp_to_crop
from .face.geometry import Poses
from .face.sketch import MOUTH_REGION, draw_mouth_sketch, lips_mask, project_mouth
from .hub import hub_file_list, refuse_token_like
from .io.audio import AUDIO_SAMPLE_RATE, load_audio
from .io.video import SYNTHETIC_LABEL, VideoWriter, iter_frames
from .parallel import release_free_memory
from .provenance import SigningKey, Watermarker
from .provenance.credentials import sign_generated_video
from .renderer import MemFaceRenderer, apply_renderer_delta
from .speaker import DELTA_FILE, SpeakerMemory
from .staging import temporary_directory

logger = logging.getLogger(__name__)

PIPELINE_INDEX = "model_index.json"
PIPELINE_FORMAT_VERSION = 1
ASSETS = Path(__file__).resolve().parent / "assets"
DEMO_PIPELINE = ASSETS / "demo_pipeline"
DEMO_SPEAKER = ASSETS / "demo_speaker"
DEFAULT_MAX_AUDIO_SECONDS = 900.0
TRIM_EVERY_CHUNKS = 16
MAX_TEMPLATE_CACHE_BYTES = 1 << 30   # decoded template frames kept on temporary disk per generation (1 GiB)
LIVE_LOOKAHEAD_FRAMES = 4       # frames of audio past a frame before it is made (160 ms at 25 fps)
PIPELINE_INDEX_FIELDS = {     # what model_index.json may hold (docs/DESIGN.md §6)
    "_class_name": ((str,), None, None), "_memface_version": ((str,), None, None),
    "format_version": ((int,), 1, 1000), "a2e": ((list,), None, None), "renderer": ((list,), None, None),
    "frontend": check_artifact_frontend, "crop_size": ((int,), 32, 1024)}
PIPELINE_FILES = [PIPELINE_INDEX, "README.md", "a2e/config.json", "a2e/model.safetensors",
                  "renderer/config.json", "renderer/model.safetensors"]


@dataclass
class GenerationOutput:
    """What one generation produced. ``T`` frames at ``fps``."""

    num_frames: int
    fps: float
    expressions: np.ndarray          # (T, K) predicted mouth expression coefficients
    retrievals: np.ndarray           # (T, k) int: the speaker-memory entries each frame read most
    retrieval_weights: np.ndarray    # (T, k) float: their attention weights
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage, and first_frame_s
    frames: np.ndarray | None = None  # (T, H, W, 3) uint8, when kept in memory
    path: Path | None = None          # the mp4, when written to a file
    watermarked: bool = False         # its frames carry the invisible watermark (memface_hub.provenance)
    content_credentials: bool = False  # it holds signed C2PA credentials (needs a signing key)


_THREADPOOLS = None


def one_blas_thread():
    """A context in which numpy's BLAS runs on one thread. OpenBLAS's workers spin for a while after each
    call and take the cores torch's convolutions need: right after the mel front end the renderer ran 2.4×
    slower (45 vs 19 ms a frame live, 2 cores), so the front ends run their BLAS on one thread."""
    global _THREADPOOLS
    if _THREADPOOLS is None:
        from threadpoolctl import ThreadpoolController

        _THREADPOOLS = ThreadpoolController()
    return _THREADPOOLS.limit(limits=1, user_api="blas")


def fast_dtype(device: str | torch.device = "cpu") -> torch.dtype:
    """The renderer dtype for real time on ``device``: bfloat16 where it is computed natively (CPUs with
    avx512-bf16 or AMX through oneDNN — about 2x faster than float32 here, 43 dB from its output — and CUDA
    devices with bf16), else float32."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        return torch.float32                   # not a device: MemFacePipeline.to says so, in one line
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu":
        return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else torch.float32
    return torch.float32


def load_speaker(name_or_path: str | os.PathLike | SpeakerMemory, **hub_kwargs) -> SpeakerMemory:
    """``"demo"`` (the bundled demo speaker), a speaker-memory folder, or a Hub repo id; keywords go to
    :meth:`SpeakerMemory.from_pretrained` (``revision``, ``token``, ``max_short_side`` …)."""
    if isinstance(name_or_path, SpeakerMemory):
        return name_or_path
    if str(name_or_path) == "demo":
        return SpeakerMemory.from_pretrained(DEMO_SPEAKER, **hub_kwargs)
    return SpeakerMemory.from_pretrained(name_or_path, **hub_kwargs)


def is_live_stream(audio) -> bool:
    """An iterator or generator of audio chunks (not a path, an array, a ``(samples, rate)`` tuple or a list)."""
    return isinstance(audio, Iterator) or (isinstance(audio, Iterable) and not isinstance(
        audio, (str, bytes, os.PathLike, np.ndarray, tuple, list, torch.Tensor)))


@dataclass
class _SpeakerContext:
    """A speaker ready for generation: its renderer (with any delta), encoded memory, template frames,
    crop transforms at the renderer's size ``(L, 2, 3)`` and the blend mask ``(S, S)``."""

    speaker: SpeakerMemory
    renderer: MemFaceRenderer
    memory: dict
    template: TemplateFrames
    affines: np.ndarray
    mask: np.ndarray


@dataclass
class _Moves:
    """Chunks of ``(expressions, vertices)`` of a whole input, and how many frames they make."""

    chunks: Iterator[tuple[np.ndarray, np.ndarray]]
    total: int

    def __iter__(self):
        return iter(self.chunks)


def pingpong_indices(start: int, count: int, length: int) -> np.ndarray:
    """Template frame for output frames ``start .. start+count-1``: 0, 1, …, L−1, L−2, …, 1, 0, 1, …"""
    steps = np.arange(start, start + count)
    if length == 1:
        return np.zeros(count, np.int64)
    period = 2 * (length - 1)
    phase = steps % period
    return np.where(phase < length, phase, period - phase).astype(np.int64)


class TemplateFrames:
    """A speaker's template video, decoded **as far as generation needs** into a disk-backed array.

    Frames are decoded in order the first time an index at or past them is asked for, so a short
    generation from a long or large template reads only its first frames (the temporary file is sparse:
    only decoded frames take disk), and RAM stays flat for any length. At most ``max_bytes`` of frames
    are kept (:data:`MAX_TEMPLATE_CACHE_BYTES`): a template longer than that is used as far as it fits
    (its first frames, back and forth), so temporary disk is bounded for any audio length.
    """

    def __init__(self, speaker: SpeakerMemory, max_bytes: int = MAX_TEMPLATE_CACHE_BYTES):
        self._tmp = temporary_directory("memface-template-")      # (also removes those of killed runs)
        self.source = speaker.template_path
        self._decoder = iter_frames(speaker.template_path, fps=speaker.meta["fps"], max_frames=len(speaker.poses),
                                    size=speaker.template_size)
        first = next(self._decoder, None)
        if first is None:
            raise MemFaceInputError(speaker.template_path, "template has no frames")
        self.count = min(len(speaker.poses), max(1, int(max_bytes) // first.nbytes))
        if self.count < len(speaker.poses):
            logger.info("%s: using the template's first %d of %d frames (back and forth), %d MB of decoded frames",
                        self.source, self.count, len(speaker.poses), self.count * first.nbytes >> 20)
        self.frames = np.lib.format.open_memmap(os.path.join(self._tmp.name, "frames.npy"), mode="w+",
                                                dtype=np.uint8, shape=(self.count, *first.shape))  # (T, H, W, 3)
        self.frames[0] = first
        self.decoded = 1

    def __len__(self) -> int:
        return self.count

    def take(self, index: np.ndarray) -> np.ndarray:
        """Frames ``(c, H, W, 3)`` at template indices ``index`` ``(c,)``, decoding up to the largest."""
        needed = int(np.max(index)) + 1
        while self.decoded < needed:
            frame = next(self._decoder, None)
            if frame is None:
                raise MemFaceInputError(self.source, f"template has {self.decoded} frames, the tracks {self.count}")
            if frame.shape != self.frames.shape[1:]:
                raise MemFaceInputError(self.source, "template frames change size")
            self.frames[self.decoded] = frame
            self.decoded += 1
        return self.frames[index]


class MemFacePipeline:
    """Inference glue around :class:`MemFaceAudioToExpression` and :class:`MemFaceRenderer`."""

    def __init__(self, a2e: MemFaceAudioToExpression, renderer: MemFaceRenderer,
                 frontend: AudioFrontEnd | None = None, max_audio_seconds: float = DEFAULT_MAX_AUDIO_SECONDS):
        if a2e.num_mouth_vertices != renderer.num_mouth_vertices:
            raise ValueError(f"a2e predicts {a2e.num_mouth_vertices} mouth vertices, "
                             f"the renderer reads {renderer.num_mouth_vertices}")
        # channels-last convolutions: oneDNN's fast layout on CPUs (about 1.6x here in float32, 1.25x in bf16)
        self.a2e, self.renderer = a2e.eval(), renderer.eval().to(memory_format=torch.channels_last)
        self.frontend = frontend or build_frontend(a2e.frontend or "mel")
        if self.frontend.feature_dim != a2e.feature_dim:
            raise ValueError(f"front end {self.frontend.name} gives {self.frontend.feature_dim} features, "
                             f"the a2e model expects {a2e.feature_dim}")
        self.max_audio_seconds = float(max_audio_seconds)
        # Fine detail at the output's resolution from the speaker's memory (see _render); False: the
        # upscaled crop alone. memory_detail_band: the detail taken is the texture finer than this many
        # crop pixels (1: only what the crop cannot hold; 3, the default: the nearest real mouth of the
        # speaker also sharpens the crop's lips: mouth sharpness 0.64 → 0.78 on held-out people).
        self.memory_detail = True
        self.memory_detail_band = 3.0
        # The renderer's output is used on the lips and the skin right around them, this many mouth widths
        # out (face.sketch.lips_mask); further out the template frame's own skin stays, so the renderer's
        # light and any contour it copied from a memory patch of another head pose never show. 0: the whole
        # mouth box, as the renderer composites it.
        self.mouth_region = MOUTH_REGION
        # The speaker's articulation gain (memface adapt measures it on their video: the shared a2e model
        # under-articulates, predicting the average motion of many people) scales the predicted expressions.
        self.articulation = True
        self._a2e_fingerprint: tuple[MemFaceAudioToExpression, str] | None = None   # (model, its fingerprint)
        self.device, self.dtype = torch.device("cpu"), torch.float32
        self._speaker_cache: dict[int, _SpeakerContext] = {}
        self._a2e_cache: dict[int, tuple[SpeakerMemory, MemFaceAudioToExpression]] = {}
        self._progress_bar_config: dict = {}

    # -- loading and saving -------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike | None = None, *, revision: str | None = None,
                        token: str | bool | None = None, cache_dir: str | os.PathLike | None = None,
                        local_files_only: bool = False, force_download: bool = False,
                        torch_dtype: torch.dtype | None = None, dtype: torch.dtype | None = None,
                        device: str | torch.device = "cpu", **kwargs) -> MemFacePipeline:
        """A pipeline folder, a Hub repo id, or (``None``) the bundled demo weights.

        The Hub keywords are those of ``huggingface_hub`` (``local_files_only`` reads the cache only,
        ``force_download`` fetches again); ``torch_dtype`` (diffusers' name) or ``dtype`` casts the renderer
        (``torch.float16`` / ``torch.bfloat16``; the a2e model stays float32), ``device`` places both.
        Other keywords go to the constructor (``max_audio_seconds``).
        """
        if torch_dtype is not None and dtype is not None and torch_dtype != dtype:
            raise ValueError(f"give torch_dtype or dtype, not both ({torch_dtype} vs {dtype})")
        dtype = dtype or torch_dtype or torch.float32
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
        directory = Path(name_or_path) if name_or_path is not None else DEMO_PIPELINE
        if name_or_path is not None and not directory.is_dir():
            directory = _download_pipeline(str(name_or_path), revision, token, cache_dir,
                                           local_files_only=local_files_only, force_download=force_download)
        index_path = directory / PIPELINE_INDEX
        if not index_path.is_file():
            raise MemFaceInputError(directory, f"not a memface pipeline (no {PIPELINE_INDEX})")
        index = read_json_file(index_path)                       # size, syntax, object and depth checked
        check_config(index, PIPELINE_INDEX_FIELDS, index_path)   # types, ranges, allowed front ends
        if index.get("_class_name") != cls.__name__:
            raise MemFaceInputError(index_path, f"not a {cls.__name__} index")
        if index.get("format_version") != PIPELINE_FORMAT_VERSION:
            raise MemFaceInputError(index_path, f"pipeline format version {index.get('format_version')!r} is not "
                                    f"supported (this memface_hub reads version {PIPELINE_FORMAT_VERSION})")
        expected = {"a2e": ["memface_hub", "MemFaceAudioToExpression"], "renderer": ["memface_hub", "MemFaceRenderer"]}
        for part, spec in expected.items():
            if index.get(part) != spec:
                raise MemFaceInputError(index_path, f"component {part!r} must be {spec}, got {index.get(part)!r}")
        a2e = MemFaceAudioToExpression.from_pretrained(directory / "a2e")
        renderer = MemFaceRenderer.from_pretrained(directory / "renderer")
        return cls(a2e, renderer, **kwargs).to(device, dtype)

    def model_card(self, repo_id: str, training_data: str | None = None, evaluation: str | None = None,
                   license: str = "apache-2.0") -> str:
        """The pipeline's README.md, from ``model_cards/pipeline_card.md``; ``license``: the weights' licence
        (a Hub identifier), set by whoever publishes them."""
        from huggingface_hub import ModelCardData

        from .cards import render_card

        data = ModelCardData(library_name="memface_hub", license=license, pipeline_tag="text-to-video",
                             tags=["memface", "talking-face", "audio-to-video", "synthetic-media"])
        return render_card(
            "pipeline_card.md", data, repo_id=repo_id, frontend=self.frontend.name, a2e_memory=self.a2e.memory_kind,
            memory_slots=self.a2e.memory_slots, exp_dim=self.a2e.exp_dim,
            crop_size=self.renderer.crop_size, renderer_memory=self.renderer.memory_kind, version=__version__,
            training_data=training_data or "Not recorded: describe the training corpus here.",
            evaluation=evaluation or "Not recorded: give the figures that describe these weights here.")

    def save_pretrained(self, directory: str | os.PathLike, card: bool = True, repo_id: str | None = None,
                        training_data: str | None = None, evaluation: str | None = None,
                        license: str = "apache-2.0") -> Path:
        """Write ``model_index.json``, ``a2e/``, ``renderer/`` (and a model card) atomically."""
        directory = Path(directory)
        if directory.exists() and any(directory.iterdir()) and not (directory / PIPELINE_INDEX).exists():
            raise MemFaceInputError(directory, "exists and is not a memface pipeline; refusing to overwrite")
        with atomic_folder(directory) as staging:
            self.a2e.save_pretrained(staging / "a2e")
            self.renderer.save_pretrained(staging / "renderer")
            for name in ("a2e", "renderer"):
                (staging / name / "README.md").unlink(missing_ok=True)
            index = {"_class_name": type(self).__name__, "_memface_version": __version__,
                     "format_version": PIPELINE_FORMAT_VERSION,
                     "a2e": ["memface_hub", "MemFaceAudioToExpression"], "renderer": ["memface_hub", "MemFaceRenderer"],
                     "frontend": self.frontend.config(), "crop_size": self.renderer.crop_size}
            (staging / PIPELINE_INDEX).write_text(json.dumps(index, indent=1))
            if card:
                (staging / "README.md").write_text(self.model_card(repo_id or directory.name, training_data,
                                                                   evaluation, license))
        return directory

    def push_to_hub(self, repo_id: str, *, private: bool = False, token: str | None = None,
                    commit_message: str = "Upload MemFace pipeline", training_data: str | None = None,
                    evaluation: str | None = None, license: str = "apache-2.0") -> str:
        """Save to a temporary folder and upload it as the model repo ``repo_id``; returns its URL.
        ``license`` (a Hub identifier) is the weights' licence, the publisher's choice."""
        from huggingface_hub import HfApi

        refuse_token_like(repo_id)
        api = HfApi(token=token)
        if "/" not in repo_id:
            repo_id = f"{api.whoami()['name']}/{repo_id}"          # the card names the full repo id
        with tempfile.TemporaryDirectory(prefix="memface-push-") as work:
            folder = self.save_pretrained(Path(work) / "pipeline", repo_id=repo_id, training_data=training_data,
                                          evaluation=evaluation, license=license)
            api.create_repo(repo_id, private=private, exist_ok=True)
            api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=commit_message)
        return f"{api.endpoint}/{repo_id}"

    def to(self, *args, device: str | torch.device | None = None, dtype: torch.dtype | None = None
           ) -> MemFacePipeline:
        """Move or cast the models, like ``torch.nn.Module.to`` and diffusers' pipelines: ``.to("cuda")``,
        ``.to(torch.bfloat16)``, ``.to("cpu", torch.float16)``, ``.to(dtype=...)``; what is not given is kept.
        The renderer takes the dtype; the a2e model stays float32 (its memory softmax is small)."""
        for arg in args:
            if isinstance(arg, torch.dtype):
                if dtype is not None:
                    raise ValueError("dtype given twice")
                dtype = arg
            elif isinstance(arg, (str, torch.device)):
                if device is not None:
                    raise ValueError("device given twice")
                device = arg
            else:
                raise TypeError(f"to() takes a device and/or a dtype, got {arg!r}")
        if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
            raise ValueError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
        if device is not None:
            try:
                device = torch.device(device)
            except (RuntimeError, TypeError) as err:
                raise MemFaceInputError("device", f"{device!r} is not a torch device ({err})") from None
            if device.type == "cuda" and not torch.cuda.is_available():
                raise MemFaceInputError("device", f"{device} asked for, but this torch has no usable CUDA device")
            if device.type == "mps" and not torch.backends.mps.is_available():
                raise MemFaceInputError("device", "mps asked for, but it is not available here")
        self.device = device if device is not None else self.device
        self.dtype = dtype or self.dtype
        self.a2e.to(self.device)
        self.renderer.to(self.device, self.dtype).to(memory_format=torch.channels_last)
        self._speaker_cache.clear()
        self._a2e_cache.clear()
        return self

    def set_progress_bar_config(self, **kwargs) -> None:
        """Options for the generation progress bar (``tqdm`` keywords, e.g. ``disable=True``, ``leave=False``),
        as in diffusers; a bar is shown by default."""
        self._progress_bar_config = dict(kwargs)

    def progress_bar_options(self, progress: bool | None) -> dict:
        options = {"desc": "generating", "unit": "frame", **self._progress_bar_config}
        if progress is not None:
            options["disable"] = not progress
        return options

    # -- inputs -------------------------------------------------------------------------------
    def load_waveform(self, audio: str | os.PathLike | np.ndarray | tuple[np.ndarray, int],
                      sampling_rate: int | None = None) -> np.ndarray:
        """A path (any container ffmpeg reads), or samples with their rate → 16 kHz mono float32.
        One input per call: a list of clips is refused (call the pipeline once per clip)."""
        if isinstance(audio, list) and audio and isinstance(audio[0], (str, os.PathLike, np.ndarray, tuple, list)):
            raise MemFaceInputError("audio", f"got a list of {len(audio)} inputs; the pipeline makes one video per "
                                    "call, so call it once per clip")
        if isinstance(audio, (str, os.PathLike)):
            return load_audio(audio, AUDIO_SAMPLE_RATE, max_seconds=self.max_audio_seconds)
        if isinstance(audio, tuple):
            audio, sampling_rate = audio
        waveform = np.asarray(audio, np.float32)
        if sampling_rate is None:
            raise MemFaceInputError("audio", "samples need their sampling_rate")
        if waveform.ndim == 2:
            waveform = waveform.mean(axis=0 if waveform.shape[0] < waveform.shape[1] else 1)
        if waveform.ndim != 1:
            raise MemFaceInputError("audio", f"expected mono samples (samples,), got shape {waveform.shape}")
        seconds = len(waveform) / float(sampling_rate)
        if seconds > self.max_audio_seconds:
            raise MemFaceInputError("audio",
                                    f"audio is {seconds:.1f} s long, the limit is {self.max_audio_seconds:g} s")
        if int(sampling_rate) != AUDIO_SAMPLE_RATE:
            import librosa

            waveform = librosa.resample(waveform, orig_sr=int(sampling_rate), target_sr=AUDIO_SAMPLE_RATE)
        return waveform.astype(np.float32)

    def renderer_for(self, speaker: SpeakerMemory) -> MemFaceRenderer:
        """The renderer to use for ``speaker``: with its fine-tuned weight delta applied when the
        speaker folder carries one (``memface adapt --finetune-...``), else the shared renderer."""
        delta = Path(speaker.template_path).parent / DELTA_FILE if speaker.template_path else None
        if delta is None or not delta.is_file():
            return self.renderer
        tuned = copy.deepcopy(self.renderer).float()
        return apply_renderer_delta(tuned, delta).to(self.device, self.dtype).eval()

    def a2e_for(self, speaker: SpeakerMemory) -> MemFaceAudioToExpression:
        """The a2e model to use for ``speaker``: with its adapted delta applied when the speaker folder carries
        one (``memface adapt --a2e-finetune-...``; refused when made for another a2e), else the shared model."""
        cached = self._a2e_cache.get(id(speaker))
        if cached is not None and cached[0] is speaker:
            return cached[1]
        delta = Path(speaker.template_path).parent / A2E_DELTA_FILE if speaker.template_path else None
        a2e = self.a2e
        if delta is not None and delta.is_file():
            a2e = apply_a2e_delta(copy.deepcopy(self.a2e), delta).eval()
        self._a2e_cache = {id(speaker): (speaker, a2e)}                             # one speaker at a time
        return a2e

    def _prepare_speaker(self, speaker: SpeakerMemory) -> _SpeakerContext:
        """What generation needs of a speaker, made once per speaker (the last one is cached)."""
        cached = self._speaker_cache.get(id(speaker))
        if cached is not None and cached.speaker is speaker:
            return cached
        renderer = self.renderer_for(speaker)
        memory = renderer.speaker_memory_inputs(speaker.keys, speaker.values)
        size = self.renderer.crop_size
        context = _SpeakerContext(
            speaker, renderer, {key: value.to(self.device, self.dtype) for key, value in memory.items()},
            TemplateFrames(speaker),
            speaker.crop_affines.astype(np.float64) * (size / speaker.layout.size),     # (L, 2, 3) frame → crop
            self.renderer.mouth_mask[0, 0].float().cpu().numpy())                       # (S, S)
        self._speaker_cache = {id(speaker): context}                                     # one speaker at a time
        return context

    # -- generation ---------------------------------------------------------------------------
    @torch.inference_mode()
    def stream(self, audio, speaker: SpeakerMemory | str, sampling_rate: int | None = None,
               generator: torch.Generator | None = None,
               chunk_size: int = 16, top_k: int = 4, timings: dict[str, float] | None = None,
               progress: bool | None = None, lookahead_frames: int = LIVE_LOOKAHEAD_FRAMES
               ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Yield chunks ``(frames (c, H, W, 3) uint8, expressions (c, K), retrievals (c, k), weights (c, k))``.

        ``audio`` is a whole input (a path, samples with their ``sampling_rate``, ``(samples, rate)``) or a
        **live stream**: any iterator of 1-D sample chunks at ``sampling_rate`` (default 16 kHz), e.g. from
        a microphone or a socket. A live stream's frames come out as soon as the audio covers them plus
        ``lookahead_frames`` more (the a2e model looks a little ahead: 4 frames = 160 ms by default), so
        the delay is bounded whatever the stream's length; expressions are predicted on a sliding window
        of the model's training context. Silent stretches of a live stream give a closed, neutral mouth.

        Generation is deterministic (nothing is sampled today); ``generator`` is the diffusers calling
        convention for any sampling step, never the global RNG. ``progress``: ``None`` follows
        :meth:`set_progress_bar_config` (a bar by default), ``True``/``False`` force it on or off."""
        from tqdm.auto import tqdm

        timings = {} if timings is None else timings
        speaker = load_speaker(speaker)
        clock = [time.perf_counter()]

        def lap(stage: str) -> None:
            now = time.perf_counter()
            timings[stage] = timings.get(stage, 0.0) + now - clock[0]
            clock[0] = now

        live = is_live_stream(audio)
        if live:
            moves = self._live_expressions(audio, speaker, sampling_rate or AUDIO_SAMPLE_RATE, lookahead_frames, lap)
        else:
            moves = self._expressions(audio, speaker, sampling_rate, chunk_size, lap)
        # the speaker: encoded memory, template frames (decoded as far as needed)
        context = self._prepare_speaker(speaker)
        lap("speaker")
        bar = tqdm(total=None if live else moves.total, **self.progress_bar_options(progress))
        start = untrimmed = 0
        for expressions, vertices in moves:                  # (c, K), (c, V, 3), frames start .. start + c
            clock[0] = time.perf_counter()                   # time spent waiting for live audio is not ours
            frames, entries, weights = self._render(context, vertices, start, top_k, lap)
            yield frames, expressions, entries, weights
            start, untrimmed = start + len(frames), untrimmed + len(frames)
            if untrimmed >= TRIM_EVERY_CHUNKS * chunk_size:
                release_free_memory()            # flat resident memory for long audio (see its docstring)
                untrimmed = 0
            clock[0] = time.perf_counter()       # time spent by the consumer is not ours
            bar.update(len(frames))
        bar.close()

    def articulation_gain(self, speaker: SpeakerMemory, a2e: MemFaceAudioToExpression) -> float:
        """The speaker's articulation gain (``speaker.json``, measured at adaptation) when generation uses the a2e
        model it was measured with, unadapted; else 1. ``self.articulation = False`` turns it off."""
        stored = speaker.meta.get("articulation")
        if not self.articulation or not stored or a2e is not self.a2e:
            return 1.0
        if self._a2e_fingerprint is None or self._a2e_fingerprint[0] is not self.a2e:
            self._a2e_fingerprint = (self.a2e, a2e_fingerprint(self.a2e))
        if stored["a2e"] != self._a2e_fingerprint[1]:
            logger.warning("speaker %r: its articulation gain was measured with another a2e model; not applied",
                           speaker.meta.get("name"))
            return 1.0
        return float(stored["gain"])

    def _expressions(self, audio, speaker: SpeakerMemory, sampling_rate, chunk_size: int, lap) -> _Moves:
        """A whole input: features → expressions → mouth vertices, handed out ``chunk_size`` frames at a time."""
        waveform = self.load_waveform(audio, sampling_rate)
        with one_blas_thread():
            features = self.frontend(waveform, AUDIO_SAMPLE_RATE)                         # (T, F)
        lap("features")
        a2e = self.a2e_for(speaker)
        expressions = a2e.predict(torch.from_numpy(features).to(self.device)).float()       # (T, K)
        expressions = expressions * self.articulation_gain(speaker, a2e)
        neutral = torch.from_numpy(speaker.neutral).to(self.device)
        vertices = a2e.vertices(expressions, neutral).cpu().numpy()                        # (T, V, 3)
        expressions = expressions.cpu().numpy()
        lap("a2e")
        chunks = ((expressions[i:i + chunk_size], vertices[i:i + chunk_size])
                  for i in range(0, len(vertices), chunk_size))
        return _Moves(chunks, len(vertices))

    def _live_expressions(self, chunks, speaker: SpeakerMemory, sampling_rate: int, lookahead: int,
                          lap) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """A live stream of audio chunks → ``(expressions, vertices)`` of each run of frames that became
        final: the audio reaches ``lookahead`` frames past them (or the stream ended)."""
        if isinstance(lookahead, bool) or not isinstance(lookahead, int) or lookahead < 0:
            raise MemFaceInputError("lookahead_frames", f"must be a whole number ≥ 0, got {lookahead!r}")
        samples_per_frame = AUDIO_SAMPLE_RATE / self.frontend.fps
        a2e = self.a2e_for(speaker)
        gain = self.articulation_gain(speaker, a2e)
        context = int(a2e.context_frames)
        neutral = torch.from_numpy(speaker.neutral).to(self.device)
        buffer, offset, emitted, received = np.zeros(0, np.float32), 0, 0, 0.0   # offset: frame of buffer[0]
        chunks = iter(chunks)
        finished = False
        while not finished:
            try:
                chunk = next(chunks)
            except StopIteration:
                finished = True
                chunk = np.zeros(0, np.float32)
            chunk = self._live_chunk(chunk, sampling_rate)
            received += len(chunk)
            if received > self.max_audio_seconds * AUDIO_SAMPLE_RATE:
                raise MemFaceInputError("audio", f"the live stream passed the limit of {self.max_audio_seconds:g} s")
            buffer = np.concatenate([buffer, chunk])
            available = int(received // samples_per_frame)                     # frames the audio covers
            ready = available if finished else available - lookahead
            if ready <= emitted:
                continue
            # predict on the last `context` frames of audio (the window the model was trained on)
            first = max(0, available - context)
            window = buffer[int(round((first - offset) * samples_per_frame)):
                            int(round((available - offset) * samples_per_frame))]
            if np.abs(window).max(initial=0.0) < SILENCE_PEAK:
                expressions = torch.zeros(available - first, self.a2e.exp_dim, device=self.device)
            else:
                with one_blas_thread():
                    features = self.frontend(window, AUDIO_SAMPLE_RATE, available - first)    # (W, F)
                lap("features")
                expressions = a2e(torch.from_numpy(features)[None].to(self.device)).expressions[0].float()
            expressions = expressions[emitted - first:ready - first] * gain                   # (c, K)
            vertices = a2e.vertices(expressions, neutral).cpu().numpy()                      # (c, V, 3)
            lap("a2e")
            yield expressions.cpu().numpy(), vertices
            emitted = ready
            keep_from = max(0, available - context)                              # bounded memory
            cut = int(round((keep_from - offset) * samples_per_frame))
            buffer, offset = buffer[cut:], keep_from

    def _live_chunk(self, chunk, sampling_rate: int) -> np.ndarray:
        chunk = np.asarray(chunk, np.float32)
        if chunk.ndim != 1:
            raise MemFaceInputError("audio", f"live chunks must be mono samples (samples,), got shape {chunk.shape}")
        if not np.isfinite(chunk).all():
            raise MemFaceInputError("audio", "a live chunk holds non-finite samples")
        if int(sampling_rate) != AUDIO_SAMPLE_RATE and len(chunk):
            from scipy.signal import resample_poly

            divisor = np.gcd(int(sampling_rate), AUDIO_SAMPLE_RATE)
            chunk = resample_poly(chunk, AUDIO_SAMPLE_RATE // divisor, int(sampling_rate) // divisor).astype(np.float32)
        return chunk

    def _render(self, context: _SpeakerContext, vertices: np.ndarray, start: int, top_k: int,
                lap) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frames ``start .. start + c`` for mouth vertices ``(c, V, 3)``: sketch on the template crops,
        render with the speaker's memory, paste back → ``(frames (c, H, W, 3), entries (c, k), weights (c, k))``."""
        count, size = len(vertices), self.renderer.crop_size
        speaker, renderer, memory, template = context.speaker, context.renderer, context.memory, context.template
        # 1. draw the projected mouth on the template crops
        index = pingpong_indices(start, count, len(template))
        affines = context.affines[index]                                                # (c, 2, 3) frame → crop
        points = project_mouth(vertices, Poses.from_array(speaker.poses[index]), affines)  # (c, V, 2)
        frames = template.take(index)                                                   # (c, H, W, 3)
        crops = np.stack([warp_to_crop(frame, affine, size) for frame, affine in zip(frames, affines)])
        sketches = np.stack([draw_mouth_sketch(p, size) for p in points])
        lap("drawing")
        # 2. render with the speaker's explicit memory
        to_tensor = lambda images: torch.from_numpy(images).to(self.device).permute(0, 3, 1, 2).to(self.dtype) / 255  # noqa: E731
        output = renderer(to_tensor(crops), to_tensor(sketches), torch.from_numpy(vertices).to(self.device, self.dtype),
                          **memory, match_seam=True)
        # the renderer's full-crop prediction, pasted on the lips and around them only (mouth_region); or its
        # own composite, pasted over the whole mouth box
        pasted = output.raw if self.mouth_region else output.image
        rendered = (pasted.float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        if output.memory_attention is not None:
            attention = output.memory_attention.float()
            weights, entries = attention.topk(min(top_k, attention.shape[-1]), dim=-1)
            weights, entries = weights.cpu().numpy(), entries.cpu().numpy()
        else:
            entries = np.full((count, top_k), -1, np.int64)
            weights = np.zeros((count, top_k), np.float32)
        lap("renderer")
        # 3. paste the mouth back into the full frames; beyond the mouth region the frame keeps its own skin
        #    untouched, so the renderer's light and any contour it copied from a memory patch of another head
        #    pose never show
        mask = context.mask
        face = np.ones(count, bool) if speaker.face is None else speaker.face[index]       # (c,)
        out = np.array(frames)
        for item in np.flatnonzero(face):                     # a frame without the face is left as it was
            blend = mask * lips_mask(points[item], size, margin=self.mouth_region) if self.mouth_region else mask
            paste_back(out[item], rendered[item], affines[item], blend, self.renderer.patch_box, in_place=True)
        # 4. the explicit memory's detail at the output resolution: the crop holds the mouth at the
        #    renderer's size, upscaled where the face is larger; the texture finer than that comes from
        #    the memory entry read most (a real mouth of this speaker of the nearest shape, kept at the
        #    video's resolution when the memory was built), on the lips and the skin around them.
        if self.memory_detail and output.memory_attention is not None:
            for item in np.flatnonzero(face):                                          # out[item]: a view, in place
                source, to_crop = speaker.detail_patch(int(entries[item, 0]))     # to the speaker's crop
                source_affine = to_crop * (size / speaker.layout.size)                 # to the renderer's crop
                # on the lips and around them only: further out the source's face contour and cheeks
                # are where its own head pose put them, and their edges would show as ghost lines
                crop_per_frame = float(np.sqrt(abs(np.linalg.det(affines[item, :, :2]))))
                transfer_detail(out[item], source, affines[item], source_affine,
                                mask * lips_mask(points[item], size), self.renderer.patch_box,
                                sigma=max(1.0, self.memory_detail_band / crop_per_frame), in_place=True)
        lap("paste_back")
        return out, entries, weights

    def __call__(self, audio, speaker: SpeakerMemory | str = "demo", sampling_rate: int | None = None,
                 generator: torch.Generator | None = None, progress: bool | None = None) -> GenerationOutput:
        """Generate in memory: ``frames`` ``(T, H, W, 3)`` uint8 (use :meth:`generate_to_file` for long audio)."""
        return self._run(audio, speaker, sampling_rate, generator, progress, sink=None)

    def generate_to_file(self, audio, speaker: SpeakerMemory | str, path: str | os.PathLike,
                         sampling_rate: int | None = None, generator: torch.Generator | None = None,
                         progress: bool | None = None, crf: int = 18,
                         signing_key: SigningKey | None = None,
                         on_frame: Callable[[np.ndarray], None] | None = None) -> GenerationOutput:
        """Stream the video into ``path`` (mp4, H.264 + AAC), atomically, labelled as synthetic: an invisible
        watermark in every frame, and C2PA content credentials declaring it AI-generated, signed with
        ``signing_key`` (default: ``SigningKey.from_env()``, from ``MEMFACE_C2PA_CERT`` / ``MEMFACE_C2PA_KEY``);
        without a key the log says the credentials were not added (see :mod:`memface_hub.provenance`).

        ``on_frame``, when given, is called with each watermarked frame ``(H, W, 3)`` uint8 as soon as it is
        written (e.g. to stream segments of the video while the rest is made, as the Space does)."""
        path = Path(path)
        signing_key = signing_key or SigningKey.from_env()       # a bad key fails here, before any work
        waveform = self.load_waveform(audio, sampling_rate)
        metadata = {"comment": SYNTHETIC_LABEL, "description": SYNTHETIC_LABEL,
                    "encoder": f"memface_hub {__version__}"}
        writer = VideoWriter(path, fps=self.frontend.fps, audio=(waveform, AUDIO_SAMPLE_RATE), crf=crf,
                             metadata=metadata)
        watermark = Watermarker()

        def sink(frame: np.ndarray) -> None:
            frame = watermark(frame)
            writer.write(frame)
            if on_frame is not None:
                on_frame(frame)

        try:
            result = self._run(waveform, speaker, AUDIO_SAMPLE_RATE, generator, progress, sink=sink)
            started = time.perf_counter()
            writer.close()
            result.timings["encoding"] = result.timings.get("encoding", 0.0) + time.perf_counter() - started
        except BaseException:
            writer.abort()
            raise
        started = time.perf_counter()
        result.path, result.watermarked = path, True
        result.content_credentials = sign_generated_video(path, signing_key)
        result.timings["content_credentials"] = time.perf_counter() - started
        return result

    def speak(self, text: str, voice: str = "en-us", rate: int = 165) -> tuple[np.ndarray, int]:
        """Typed text → speech with espeak-ng: ``(samples, sampling_rate)`` to pass as ``audio``."""
        from .audio.tts import synthesize

        if not text or not text.strip():
            raise MemFaceInputError("text", "is empty")
        speech = synthesize(text, voice=voice, rate=rate)
        return speech.samples, speech.sample_rate

    def _run(self, audio, speaker, sampling_rate, generator, progress,
             sink: Callable[[np.ndarray], None] | None) -> GenerationOutput:
        timings: dict[str, float] = {}
        started = time.perf_counter()
        kept, expressions, entries, weights = [], [], [], []
        for frames, chunk_expressions, chunk_entries, chunk_weights in self.stream(
                audio, speaker, sampling_rate, generator, timings=timings, progress=progress):
            if "first_frame_s" not in timings:
                timings["first_frame_s"] = time.perf_counter() - started
            if sink is None:
                kept.append(frames)
            else:
                clock = time.perf_counter()
                for frame in frames:
                    sink(frame)
                timings["encoding"] = timings.get("encoding", 0.0) + time.perf_counter() - clock
            expressions.append(chunk_expressions)
            entries.append(chunk_entries)
            weights.append(chunk_weights)
        timings["total"] = time.perf_counter() - started
        count = sum(len(e) for e in expressions)
        return GenerationOutput(count, self.frontend.fps, np.concatenate(expressions), np.concatenate(entries),
                                np.concatenate(weights), timings, np.concatenate(kept) if kept else None)


def _download_pipeline(repo_id: str, revision: str | None, token, cache_dir, local_files_only: bool = False,
                       force_download: bool = False) -> Path:
    """Fetch a pipeline repo's JSON and safetensors files (never anything else) → local folder."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        files = None if local_files_only else hub_file_list(repo_id, revision=revision, token=token)  # refuses pickle
        if files is not None and PIPELINE_INDEX not in files:
            raise MemFaceInputError(repo_id, f"not a memface pipeline (no {PIPELINE_INDEX} in the repo)")
        folder = snapshot_download(repo_id, revision=revision, token=token, cache_dir=cache_dir,
                                   allow_patterns=PIPELINE_FILES, local_files_only=files is None,
                                   force_download=force_download and files is not None)
    except LocalEntryNotFoundError:
        raise MemFaceInputError(repo_id, "not in the local Hub cache, and the Hub is offline or unreachable") from None
    except (HfHubHTTPError, ValueError, OSError) as err:
        raise MemFaceInputError(repo_id, f"cannot load the pipeline from the Hub ({type(err).__name__}: "
                                f"{str(err).splitlines()[0] if str(err) else ''})") from None
    return Path(folder)
