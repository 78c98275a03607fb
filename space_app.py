"""The memface_hub Gradio Space: adapt MemFace to a person, make them talk, share and inspect the memory.

Thin by design: the pipeline is built once at start, and every model step is one call into the
package (``MemFacePipeline.generate_to_file``, ``adapt_speaker``, ``SpeakerMemory.push_to_hub``). This
file holds the UI, the input limits, readable errors, and two small pictures of what the renderer's
explicit memory (paper Sec. 3.3) was asked for.

Tabs (and their ``gradio_client`` endpoints, ``api_name``):

* **Generate** (``/generate``): a speaker (the bundled demo speaker, one adapted in this session, or
  a Hub speaker id typed in) + speech (uploaded or recorded audio, or typed text spoken by espeak-ng)
  → a talking video, labelled synthetic in its metadata.
* **Adapt** (``/adapt``): 15–60 s of video of one person, with the consent box ticked → a speaker
  memory (tracking, memory building, renderer fine-tuning, each shown as a progress stage), its
  contact sheet, and the speaker selectable in Generate for the rest of the session.
* **Share** (``/push``): an adapted speaker → its own (private by default) Hub repo, pushed with the
  visitor's own account: "Sign in with Hugging Face" (OAuth, scopes ``write-repos`` + ``contribute-repos``
  in ``SPACE_README.md``), never the Space's token; ``gradio_client`` callers grant theirs with
  ``Client(..., oauth_token=...)``. The license and consent are written into its card.
* **Inspect**: for the last generated clip, which memory entries each frame read (a heatmap, frames ×
  entries) and the top patch of sampled frames. ``/speakers`` lists the speakers this session can use.

Run it::

    python space_app.py --host 127.0.0.1 --port 7860                # bundled demo weights and speaker
    python space_app.py --model ./my_pipeline --speaker ./my_speaker  # or Hub ids
    MEMFACE_SPACE_MODEL=user/pipeline MEMFACE_SPACE_SPEAKER=user/speaker python space_app.py

Every flag has a ``MEMFACE_SPACE_*`` environment variable (``python space_app.py --help``). Every video it
makes carries the invisible watermark, and C2PA credentials when ``MEMFACE_C2PA_CERT`` / ``MEMFACE_C2PA_KEY``
are set (Space secrets; see ``memface_hub.provenance``).
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import gradio as gr
import numpy as np

from memface_hub.errors import MemFaceInputError
from memface_hub.hub import refuse_token_like
from memface_hub.io.audio import AUDIO_SAMPLE_RATE
from memface_hub.io.video import VideoWriter, probe
from memface_hub.pipeline import MemFacePipeline, fast_dtype, load_speaker
from memface_hub.speaker import SpeakerMemory
from memface_hub.training.adapt import adapt_speaker

logger = logging.getLogger("memface_hub.space")

DEFAULT_CHOICE = "demo"                  # the speaker chooser's value for the Space's default speaker
ADAPTED_PREFIX = "adapted:"              # ... and for a speaker adapted in this session
MOCKED_OAUTH_TOKEN = "mock-oauth-token-for-local-dev"   # what gradio's local OAuth mock hands out (gradio.oauth)
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}")
REPO_NAME = re.compile(r"([A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}")
MAX_SESSION_SPEAKERS = 5
SEGMENT_SECONDS = 1.0                    # the Generate tab streams the video in segments of this length


def can_stream_video() -> bool:
    """Gradio's streamed video output muxes segments with the system's ffmpeg and ffprobe (a Space gets them
    from ``packages.txt``); without them the Generate tab shows the whole video when it is done."""
    return shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None
LICENSES = ["cc-by-nc-4.0", "cc-by-4.0", "cc-by-nc-sa-4.0", "cc-by-sa-4.0", "cc0-1.0", "apache-2.0", "mit", "other"]
EXAMPLE_TEXTS = ["Bob and Pam met by the map.", "Peter picked a pepper by the pond.",
                 "Bring me a big map, please.", "We will meet at nine in the morning."]
ADAPT_STAGES = {  # adapt_speaker's stages → (progress fraction, what the user reads)
    "tracking": (0.05, "1/3 tracking the face in every frame"),
    "memory": (0.60, "2/3 building the speaker memory (choosing the most different mouth shapes)"),
    "fine-tuning": (0.70, "3/3 fine-tuning the renderer on this person"),
    "done": (1.0, "done"),
}


# -- configuration --------------------------------------------------------------------------------
@dataclass
class SpaceConfig:
    """What the Space serves and its limits. Every field but the ``*_steps`` is a command-line flag and a
    ``MEMFACE_SPACE_<FIELD>`` environment variable (:data:`FLAGS`)."""

    model: str | None = None              # pipeline folder or Hub id; None = bundled demo weights
    speaker: str = "demo"                 # default speaker: "demo" (bundled), a folder, or a Hub id
    work_dir: str | None = None           # adapted speakers, generated videos (default: a temp folder)
    min_adapt_seconds: float = 15.0
    max_adapt_seconds: float = 60.0
    max_audio_seconds: float = 60.0
    max_text_chars: int = 600
    max_file_size: str = "200mb"          # per upload, enforced by gradio before any handler runs
    entries: int = 300                    # speaker-memory entries (N, paper Sec. 3.3)
    finetune_seconds: float = 30.0        # renderer fine-tuning budget per adaptation (0: memory only)
    finetune_steps: int | None = None     # ... or a step budget (tests)
    a2e_finetune_seconds: float = 15.0    # a2e fine-tuning budget when the video has speech (0: none)
    a2e_finetune_steps: int | None = None  # ... or a step budget (tests)
    concurrency: int = 1                  # generations at once (queue's default concurrency limit)
    queue_size: int = 64                  # waiting requests beyond this are told the queue is full
    base_model: str | None = None         # pipeline repo named in shared speakers' cards
    login: bool | None = None             # "Sign in with Hugging Face" button; None: only when run as a Space

    def __post_init__(self):
        if not 0 < self.min_adapt_seconds <= self.max_adapt_seconds:
            raise ValueError(f"need 0 < min_adapt_seconds <= max_adapt_seconds, got {self.min_adapt_seconds} "
                             f"and {self.max_adapt_seconds}")
        if self.max_audio_seconds <= 0 or self.max_text_chars <= 0 or self.entries <= 0:
            raise ValueError(f"limits must be positive: max_audio_seconds={self.max_audio_seconds}, "
                             f"max_text_chars={self.max_text_chars}, entries={self.entries}")
        if self.concurrency < 1 or self.queue_size < 1:
            raise ValueError(f"concurrency and queue_size must be >= 1, got {self.concurrency}, {self.queue_size}")


def truthy(text: str) -> bool:
    """A flag's yes/no value: 1, true, yes, on (any case) are yes."""
    return str(text).strip().lower() in ("1", "true", "yes", "on")


FLAGS = [  # SpaceConfig fields settable from the command line / MEMFACE_SPACE_<NAME>: (name, type, help)
    ("model", str, "pipeline folder or Hub id (default: the bundled demo weights)"),
    ("speaker", str, "default speaker: 'demo' (bundled), a speaker folder or a Hub id"),
    ("work_dir", str, "where adapted speakers and videos go (default: a fresh temporary folder)"),
    ("min_adapt_seconds", float, "shortest video accepted for adaptation"),
    ("max_adapt_seconds", float, "longest video accepted for adaptation"),
    ("max_audio_seconds", float, "longest speech accepted for generation"),
    ("max_text_chars", int, "longest typed text accepted"),
    ("max_file_size", str, "largest upload, e.g. 200mb (refused by gradio before it reaches the app)"),
    ("entries", int, "speaker-memory entries per adapted speaker"),
    ("finetune_seconds", float, "renderer fine-tuning budget per adaptation in seconds (0: memory only)"),
    ("a2e_finetune_seconds", float, "a2e fine-tuning budget per adaptation in seconds, when the video has speech "
                                    "(0: none)"),
    ("concurrency", int, "generations running at once"),
    ("queue_size", int, "most requests waiting in the queue"),
    ("base_model", str, "pipeline Hub repo named in shared speakers' cards (default: --model when a Hub id)"),
    ("login", truthy,
     "show 'Sign in with Hugging Face' (default: only in a Space; locally gradio signs you in as this machine's "
     "`hf auth login` account, which needs the network)"),
]


def build_parser() -> argparse.ArgumentParser:
    defaults = SpaceConfig()
    parser = argparse.ArgumentParser(description="The memface_hub Gradio Space. Every flag can also be set "
                                                 "with MEMFACE_SPACE_<FLAG>, e.g. MEMFACE_SPACE_MODEL.")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="address to serve on (GRADIO_SERVER_NAME; a Space sets 0.0.0.0)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
                        help="port (GRADIO_SERVER_PORT)")
    for name, kind, help_text in FLAGS:
        value = os.environ.get(f"MEMFACE_SPACE_{name.upper()}") or getattr(defaults, name)
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None if value is None else kind(value),
                            help=f"{help_text} [MEMFACE_SPACE_{name.upper()}]")
    return parser


def config_from_args(args: argparse.Namespace) -> SpaceConfig:
    return SpaceConfig(**{name: getattr(args, name) for name, _, _ in FLAGS})


# -- readable errors ------------------------------------------------------------------------------
def _readable(err: MemFaceInputError, label: str | None = None) -> gr.Error:
    """A ``gr.Error`` from a package error: server paths (uploads, caches) shown as the file's name."""
    source = err.source
    if os.path.isabs(source):
        source = f"{label} '{Path(source).name}'" if label else Path(source).name
    return gr.Error(f"{source}: {err.problem}", title="Input not usable", print_exception=False)


def _plain_text(value, label: str) -> str | None:
    """A handler's text or file-path input as it must be: a string or nothing (an API caller can send any JSON)."""
    if value is not None and not isinstance(value, str):
        raise _refuse(f"{label}: expected text, got a JSON {type(value).__name__}")
    return value


def readable_refused_uploads() -> None:
    """Gradio refuses an input naming a file on the server that the caller never uploaded (``InvalidPathError``,
    before any handler runs: the file is never read) but answers the caller ``{"error": null}`` and logs a
    traceback. Refuse it as an error the caller can read instead; idempotent, and a no-op if gradio's check
    moved (its name is private)."""
    from gradio import processing_utils
    from gradio.exceptions import InvalidPathError

    check = getattr(processing_utils, "_check_allowed", None)
    if check is None or getattr(check, "memface_readable", False):
        return

    class RefusedUpload(gr.Error, InvalidPathError):      # still an InvalidPathError for gradio's own handlers
        pass

    def checked(path, check_in_upload_folder: bool):
        try:
            return check(path, check_in_upload_folder)
        except InvalidPathError:
            if not check_in_upload_folder:                # an output of the app itself: gradio's own message
                raise
            raise RefusedUpload(f"file: {Path(str(path)).name!r} was not uploaded to this app; upload the file",
                                title="Input not usable", print_exception=False) from None

    checked.memface_readable = True
    processing_utils._check_allowed = checked


def _refuse(message: str) -> gr.Error:
    return gr.Error(message, title="Input not usable", print_exception=False)


def running_in_a_space() -> bool:
    """On Hugging Face Spaces (``SPACE_ID`` is set), where "Sign in with Hugging Face" is real OAuth."""
    return bool(os.environ.get("SPACE_ID"))


def hub_token_of(oauth_token: gr.OAuthToken | None) -> str | None:
    """The Hub token to push with: the signed-in visitor's OAuth token. Run locally with ``--login``, gradio
    signs the user in as this machine's ``hf auth login`` account and hands over a placeholder token: that
    account's own token is used then (never in a Space, where OAuth is real)."""
    if oauth_token is None or not oauth_token.token:
        return None
    if oauth_token.token == MOCKED_OAUTH_TOKEN and not running_in_a_space():
        from huggingface_hub import get_token

        return get_token()
    return oauth_token.token


# -- pictures of the explicit memory's retrievals -------------------------------------------------
def retrieval_heatmap(retrievals: np.ndarray, weights: np.ndarray, num_entries: int, path: str | os.PathLike,
                      width: int = 960, height: int = 360) -> Path:
    """PNG heatmap of which memory entries each frame read: x = frame, y = entry, colour = attention.

    retrievals ``(T, k)`` int entry ids (−1: none), weights ``(T, k)`` their attention weights.
    """
    frames = len(retrievals)
    grid = np.zeros((num_entries, max(frames, 1)), np.float32)                 # (N, T)
    for frame, (entries, frame_weights) in enumerate(zip(retrievals, weights)):
        keep = entries >= 0
        grid[entries[keep], frame] += frame_weights[keep]
    grid /= max(float(grid.max()), 1e-8)
    image = cv2.resize((grid * 255).astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    image = cv2.applyColorMap(image, cv2.COLORMAP_VIRIDIS)                      # (H, W, 3) BGR
    margin_left, margin_bottom = 70, 40
    canvas = np.full((height + margin_bottom + 10, width + margin_left + 10, 3), 255, np.uint8)
    canvas[10:10 + height, margin_left:margin_left + width] = image
    text = dict(fontFace=cv2.FONT_HERSHEY_SIMPLEX, fontScale=0.45, color=(40, 40, 40), thickness=1,
                lineType=cv2.LINE_AA)
    cv2.putText(canvas, "entry 0", (4, 22), **text)
    cv2.putText(canvas, f"{num_entries - 1}", (4, 10 + height), **text)
    cv2.putText(canvas, "frame 0", (margin_left, height + 32), **text)
    cv2.putText(canvas, f"frame {frames - 1}", (margin_left + width - 90, height + 32), **text)
    cv2.putText(canvas, "memory entries read per frame (brighter = more attention)",
                (margin_left + width // 2 - 220, height + 32), **text)
    cv2.imwrite(str(path), canvas)
    return Path(path)


def retrieval_strip(retrievals: np.ndarray, patches: np.ndarray, path: str | os.PathLike, count: int = 12,
                    scale: int = 2) -> Path:
    """PNG strip: for ``count`` evenly spaced frames, the memory patch it read most, labelled ``f<frame> e<entry>``.

    retrievals ``(T, k)`` int, patches ``(N, 3, h, w)`` uint8 RGB.
    """
    frames = np.unique(np.linspace(0, len(retrievals) - 1, min(count, len(retrievals))).round().astype(int))
    height, width = patches.shape[2] * scale, patches.shape[3] * scale
    tiles = []
    for frame in frames:
        entry = int(retrievals[frame, 0])
        tile = np.full((height + 18, width, 3), 255, np.uint8)
        if entry >= 0:
            patch = cv2.cvtColor(patches[entry].transpose(1, 2, 0), cv2.COLOR_RGB2BGR)
            tile[:height] = cv2.resize(patch, (width, height), interpolation=cv2.INTER_NEAREST)
        cv2.putText(tile, f"f{frame} e{entry}", (2, height + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (40, 40, 40), 1,
                    cv2.LINE_AA)
        tiles.append(tile)
        tiles.append(np.full((height + 18, 4, 3), 255, np.uint8))
    cv2.imwrite(str(path), np.concatenate(tiles[:-1], axis=1))
    return Path(path)


class _SpeakerCache:
    """The few most recently used speakers, loaded once (the pipeline caches the last one's frames)."""

    def __init__(self, size: int = 8):
        self.size, self._items, self._lock = size, OrderedDict(), threading.Lock()

    def get(self, key: str, load: Callable[[], SpeakerMemory]) -> SpeakerMemory:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        speaker = load()                      # outside the lock: a Hub download must not block others
        with self._lock:
            self._items[key] = speaker
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return speaker

    def forget(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)


# -- the app --------------------------------------------------------------------------------------
class MemFaceSpace:
    """The Space's handlers around one pipeline. ``blocks()`` builds the UI, ``launch()`` serves it."""

    def __init__(self, config: SpaceConfig):
        self.config = config
        self.pipeline = MemFacePipeline.from_pretrained(config.model, max_audio_seconds=config.max_audio_seconds,
                                                        torch_dtype=fast_dtype("cpu"))
        self.default_speaker = load_speaker(config.speaker)
        self.work = Path(config.work_dir or tempfile.mkdtemp(prefix="memface-space-")).resolve()
        for folder in ("speakers", "videos", "pictures"):
            (self.work / folder).mkdir(parents=True, exist_ok=True)
        self.base_model = config.base_model or (config.model if config.model and HUB_ID.fullmatch(config.model)
                                                and not Path(config.model).exists() else None)
        self._speakers = _SpeakerCache()
        self.login = running_in_a_space() if config.login is None else bool(config.login)
        self.streaming = can_stream_video()
        readable_refused_uploads()
        logger.info("MemFace Space: pipeline %s, default speaker %r (%d entries), work dir %s",
                    config.model or "bundled demo", self.default_speaker.meta.get("name"),
                    self.default_speaker.num_entries, self.work)

    # -- speakers ---------------------------------------------------------------------------------
    def choices(self, session: dict[str, str]) -> list[tuple[str, str]]:
        """The speaker chooser's entries: the default speaker, then this session's adapted speakers."""
        if self.config.speaker == "demo":
            label = "demo speaker (bundled)"
        else:
            label = f"default speaker: {str(self.default_speaker.meta.get('name', self.config.speaker))[:40]}"
        return [(label, DEFAULT_CHOICE)] + self.adapted_choices(session)

    @staticmethod
    def adapted_choices(session: dict[str, str]) -> list[tuple[str, str]]:
        return [(f"{name} (adapted in this session)", ADAPTED_PREFIX + name) for name in session]

    def speakers(self, session: dict[str, str]) -> list[str]:
        """``/speakers``: the speaker values this session can pass to ``/generate`` (or type a Hub id)."""
        return [value for _, value in self.choices(session or {})]

    def resolve_speaker(self, choice: str | None, session: dict[str, str]) -> SpeakerMemory:
        choice = (_plain_text(choice, "speaker") or "").strip()
        if choice in ("", DEFAULT_CHOICE):
            return self.default_speaker
        if choice.startswith(ADAPTED_PREFIX):
            folder = (session or {}).get(choice[len(ADAPTED_PREFIX):])
            if folder is None:
                raise _refuse(f"speaker: no speaker {choice[len(ADAPTED_PREFIX):]!r} was adapted in this session "
                              "(adapted speakers last as long as the browser session; adapt it again)")
            return self._speakers.get(folder, lambda: SpeakerMemory.from_pretrained(folder))
        if not HUB_ID.fullmatch(choice) or Path(choice).exists():
            raise _refuse(f"speaker: {choice!r} is neither a speaker of this session nor a Hub repo id (user/name)")
        try:
            return self._speakers.get(f"hub:{choice}", lambda: SpeakerMemory.from_pretrained(choice))
        except MemFaceInputError as err:
            raise _readable(err) from None
        except Exception as err:    # network failures reach us as many types; the app must keep serving
            logger.warning("loading speaker %s from the Hub failed: %s", choice, err, exc_info=True)
            raise _refuse(f"{choice}: cannot load this speaker from the Hub ({type(err).__name__})") from None

    def forget_session(self, session: dict[str, str] | None) -> None:
        """When a session ends, its adapted speakers are deleted (they are a person's likeness)."""
        for folder in (session or {}).values():
            self._speakers.forget(folder)
            if Path(folder).resolve().is_relative_to(self.work):
                shutil.rmtree(folder, ignore_errors=True)

    # -- generate ---------------------------------------------------------------------------------
    def generate(self, speaker_choice: str | None, audio: str | None, text: str | None,
                 session: dict[str, str], progress=gr.Progress(track_tqdm=True)) -> tuple[str, dict, str, str]:
        """``/generate``: (speaker, audio file or None, text) → (video, summary, heatmap, strip). The
        pipeline's progress bar is shown in the page (``track_tqdm``)."""
        speaker = self.resolve_speaker(speaker_choice, session)
        speech = self._speech(audio, text)
        path = self._new_video()
        started = time.perf_counter()
        try:
            result = self.pipeline.generate_to_file(speech, speaker, path)
        except MemFaceInputError as err:
            raise _readable(err, "audio") from None
        return self._finished(speaker, result, path, time.perf_counter() - started)

    def generate_live(self, speaker_choice: str | None, audio: str | None, text: str | None,
                      session: dict[str, str], progress=gr.Progress(track_tqdm=True)):
        """The Generate tab: like :meth:`generate`, but the video is streamed while it is made — yields
        ``(segment, …)`` for each :data:`SEGMENT_SECONDS` of frames (an mp4 with its own slice of the speech,
        watermarked like the whole), then ``(None, video, summary, heatmap, strip)`` with the whole video."""
        speaker = self.resolve_speaker(speaker_choice, session)
        speech = self._speech(audio, text)
        try:
            waveform = self.pipeline.load_waveform(speech)                 # 16 kHz mono, loaded once
        except MemFaceInputError as err:
            raise _readable(err, "audio") from None
        path = self._new_video()
        folder = self.work / "segments" / path.stem
        folder.mkdir(parents=True, exist_ok=True)
        self._prune(self.work / "segments", keep=50)
        fps = self.pipeline.frontend.fps
        per_frame, size = AUDIO_SAMPLE_RATE / fps, max(1, round(SEGMENT_SECONDS * fps))
        made: queue.Queue = queue.Queue()
        buffer: list[np.ndarray] = []
        state: dict = {"start": 0}

        def flush() -> None:
            start = state["start"]
            segment = folder / f"{start:06d}.mp4"
            sound = waveform[int(start * per_frame):int((start + len(buffer)) * per_frame)]
            with VideoWriter(segment, fps=fps, audio=(sound, AUDIO_SAMPLE_RATE), crf=23) as writer:
                for frame in buffer:
                    writer.write(frame)
            state["start"] += len(buffer)
            buffer.clear()
            made.put(str(segment))

        def on_frame(frame: np.ndarray) -> None:
            buffer.append(frame)
            if len(buffer) >= size:
                flush()

        def work() -> None:
            started = time.perf_counter()
            try:
                state["result"] = self.pipeline.generate_to_file((waveform, AUDIO_SAMPLE_RATE), speaker, path,
                                                                 on_frame=on_frame)
                if buffer:
                    flush()
                state["seconds"] = time.perf_counter() - started
            except BaseException as err:           # handed to the request's thread, raised there
                state["error"] = err
            finally:
                made.put(None)

        worker = threading.Thread(target=work, name=f"generate-{path.stem}", daemon=True)
        worker.start()
        while (segment := made.get()) is not None:
            yield segment, gr.skip(), gr.skip(), gr.skip(), gr.skip()
        worker.join()
        if "error" in state:
            if isinstance(state["error"], MemFaceInputError):
                raise _readable(state["error"], "audio") from None
            raise state["error"]
        yield (None, *self._finished(speaker, state["result"], path, state["seconds"]))

    def _new_video(self) -> Path:
        self._prune(self.work / "videos")
        return self.work / "videos" / f"{uuid.uuid4().hex}.mp4"

    def _speech(self, audio: str | None, text: str | None):
        """The speech to say: an uploaded or recorded file (checked), or the text spoken by espeak-ng."""
        audio, text = _plain_text(audio, "audio"), _plain_text(text, "text")
        if audio:
            try:
                info = probe(audio)
            except MemFaceInputError as err:
                raise _readable(err, "audio") from None
            if not info.has_audio:
                raise _refuse(f"audio: '{Path(audio).name}' has no sound in it; upload or record speech "
                              "(wav, mp3, m4a, ogg, flac, or a video with sound)")
            if info.duration > self.config.max_audio_seconds:
                raise _refuse(f"audio: '{Path(audio).name}' is {info.duration:.1f} s long, the limit here is "
                              f"{self.config.max_audio_seconds:g} s; trim it")
            speech = audio
        elif text and text.strip():
            if len(text) > self.config.max_text_chars:
                raise _refuse(f"text: {len(text)} characters, the limit here is {self.config.max_text_chars}")
            try:
                speech = self.pipeline.speak(text.strip())
            except MemFaceInputError as err:
                raise _readable(err) from None
        else:
            raise _refuse("speech: upload or record audio, or type text to be spoken")
        return speech

    def _finished(self, speaker: SpeakerMemory, result, path: Path, seconds: float) -> tuple[str, dict, str, str]:
        """(video, summary, heatmap, strip) of a finished generation."""
        name = path.stem
        heatmap = retrieval_heatmap(result.retrievals, result.retrieval_weights, speaker.num_entries,
                                    self.work / "pictures" / f"{name}-heatmap.png")
        strip = retrieval_strip(result.retrievals, speaker.values, self.work / "pictures" / f"{name}-strip.png")
        self._prune(self.work / "pictures")
        summary = {"speaker": speaker.meta.get("name"), "frames": result.num_frames, "fps": result.fps,
                   "seconds": round(result.num_frames / result.fps, 2),
                   "generation_seconds": round(seconds, 2),
                   "memory_entries": speaker.num_entries,
                   "distinct_entries_read": int(np.unique(result.retrievals[result.retrievals >= 0]).size),
                   "watermarked": result.watermarked, "c2pa_signed": result.content_credentials}
        return str(path), summary, str(heatmap), str(strip)

    @staticmethod
    def _prune(folder: Path, keep: int = 200) -> None:
        """Keep the newest ``keep`` files or folders (gradio serves its own copy of each returned file)."""
        files = sorted(folder.iterdir(), key=lambda p: p.stat().st_mtime)
        for stale in files[:-keep] if len(files) > keep else []:
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)

    # -- adapt ------------------------------------------------------------------------------------
    def adapt(self, video: str | None, name: str | None, consent: bool, session: dict[str, str],
              progress=gr.Progress()):
        """``/adapt``: (video, name, consent) → (memory contact sheet, summary); ``summary["speaker"]`` is
        the new speaker's value for ``/generate``."""
        config = self.config
        if not consent:
            raise _refuse("consent: tick the box to confirm the person in the video agreed to this")
        if not video:
            raise _refuse(f"video: upload {config.min_adapt_seconds:g}–{config.max_adapt_seconds:g} s of video "
                          "of one person")
        try:
            info = probe(video)
        except MemFaceInputError as err:
            raise _readable(err, "video") from None
        upload = Path(video).name
        if not info.has_video:
            raise _refuse(f"video: '{upload}' has no video stream")
        if info.duration < config.min_adapt_seconds:
            raise _refuse(f"video: '{upload}' is {info.duration:.1f} s long; adaptation needs "
                          f"{config.min_adapt_seconds:g}–{config.max_adapt_seconds:g} s of one person")
        if info.duration > config.max_adapt_seconds:
            raise _refuse(f"video: '{upload}' is {info.duration:.1f} s long, the limit here is "
                          f"{config.max_adapt_seconds:g} s; trim it")
        session = dict(session or {})
        if len(session) >= MAX_SESSION_SPEAKERS:
            raise _refuse(f"speaker: this session already holds {MAX_SESSION_SPEAKERS} adapted speakers")
        name = self._unique_name(name or Path(video).stem, session)
        folder = self.work / "speakers" / uuid.uuid4().hex
        started = time.perf_counter()
        progress(0.0, desc="starting")
        finetune = bool(config.finetune_steps or config.finetune_seconds)
        a2e_finetune = bool(config.a2e_finetune_steps or config.a2e_finetune_seconds)
        try:
            result = adapt_speaker(video, folder, name=name, entries=config.entries,
                                   renderer=self.pipeline.renderer if finetune else None,
                                   finetune_steps=config.finetune_steps,
                                   finetune_seconds=config.finetune_seconds or None,
                                   a2e=self.pipeline.a2e if a2e_finetune else None,
                                   a2e_finetune_steps=config.a2e_finetune_steps if a2e_finetune else None,
                                   a2e_finetune_seconds=(config.a2e_finetune_seconds or None) if a2e_finetune else None,
                                   max_seconds=config.max_adapt_seconds + 0.5, progress=False,
                                   on_stage=lambda stage: progress(*ADAPT_STAGES[stage]))
        except MemFaceInputError as err:
            shutil.rmtree(folder, ignore_errors=True)
            raise _readable(err, "video") from None
        speaker = self._speakers.get(str(folder), lambda: SpeakerMemory.from_pretrained(folder))
        sheet = speaker.contact_sheet(self.work / "pictures" / f"{folder.name}-memory.png", scale=1.0)
        session[name] = str(folder)
        value = ADAPTED_PREFIX + name
        summary = {"speaker": value, "entries": speaker.num_entries, "video_seconds": round(info.duration, 2),
                   "memory_seconds": round(result.memory_seconds, 2),
                   "finetune_seconds": round(result.finetune_seconds, 2), "finetune_steps": result.finetune_steps,
                   "a2e_finetune_seconds": round(result.a2e_finetune_seconds, 2),
                   "a2e_finetune_steps": result.a2e_finetune_steps, "a2e_adapted": result.a2e_adapted,
                   "total_seconds": round(time.perf_counter() - started, 2)}
        logger.info("adapted speaker %r: %s", name, summary)
        return str(sheet), summary, session

    def refresh_choosers(self, session: dict[str, str], summary: dict | None):
        """After an adaptation: the speaker choosers list this session's speakers, the new one selected."""
        value = (summary or {}).get("speaker")
        generate_choices, share_choices = self.choices(session or {}), self.adapted_choices(session or {})
        return (gr.Dropdown(choices=generate_choices, value=value or DEFAULT_CHOICE),
                gr.Dropdown(choices=share_choices, value=value if share_choices else None))

    @staticmethod
    def _unique_name(wanted: str, session: dict[str, str]) -> str:
        base = re.sub(r"[^A-Za-z0-9_-]+", "-", wanted).strip("-")[:40] or "speaker"
        name, number = base, 2
        while name in session:
            name, number = f"{base}-{number}", number + 1
        return name

    # -- share ------------------------------------------------------------------------------------
    def push(self, speaker_choice: str | None, repo_id: str | None, license: str | None, consent: str | None,
             source_description: str | None, private: bool, session: dict[str, str],
             oauth_token: gr.OAuthToken | None) -> str:
        """``/push``: an adapted speaker → its own Hub repo, with the signed-in visitor's account; returns its
        URL. ``oauth_token`` is injected by gradio (the "Sign in with Hugging Face" session, or a
        ``gradio_client`` caller's ``Client(..., oauth_token=...)``): used for this call only, never stored,
        logged, or put into an error message. The Space's own token is never used."""
        choice = (speaker_choice or "").strip()
        if not choice.startswith(ADAPTED_PREFIX):
            raise _refuse("speaker: choose a speaker adapted in this session (Adapt tab) to share")
        speaker = self.resolve_speaker(choice, session)
        repo_id = (repo_id or "").strip()
        try:
            refuse_token_like(repo_id)      # a token pasted into the repo box: never echo or log it
        except MemFaceInputError as err:
            raise _readable(err) from None
        if not REPO_NAME.fullmatch(repo_id):
            raise _refuse(f"repo: {repo_id!r} is not a Hub repo name (name or user/name)")
        token = hub_token_of(oauth_token)
        if not token:
            raise _refuse("sign in: press 'Sign in with Hugging Face' (Share tab) first; the speaker is pushed to "
                          "your own account, with your permission, for this upload only"
                          if self.login else
                          "sign in: pushing needs your Hugging Face account; sign-in is offered when this app runs "
                          "as a Space (or with --login); API callers pass Client(..., oauth_token=...)")
        for field_name, value in (("license", license), ("consent", consent)):
            if not (value or "").strip():
                raise _refuse(f"{field_name}: required; it is written into the speaker's card")
        try:
            url = speaker.push_to_hub(repo_id, license=license.strip(), consent=consent.strip(),
                                      base_model=self.base_model, source_description=(source_description or "").strip(),
                                      private=bool(private), token=token)
        except MemFaceInputError as err:
            raise _refuse(str(_readable(err)).replace(token, "<token>")) from None
        except Exception as err:    # HTTP and network errors from huggingface_hub: say which, never the token
            first_line = (str(err).strip().splitlines() or [""])[0].replace(token, "<token>")
            logger.warning("push of %s failed: %s", repo_id, type(err).__name__)
            raise _refuse(f"{repo_id}: the Hub refused or could not be reached ({type(err).__name__}: "
                          f"{first_line[:300]})") from None
        logger.info("shared speaker %r as %s", speaker.meta.get("name"), url)
        return url

    # -- the UI -----------------------------------------------------------------------------------
    def blocks(self) -> gr.Blocks:
        config = self.config
        with gr.Blocks(title="MemFace talking faces", delete_cache=(1800, 3600)) as demo:
            session = gr.State({}, time_to_live=6 * 3600, delete_callback=self.forget_session)
            gr.Markdown(
                "# MemFace talking faces\n"
                "Speech + a short video of a person → a talking video of that person "
                "([MemFace](https://arxiv.org/abs/2212.05005), implicit and explicit memories). Every video made "
                "here is **synthetic**: it carries an invisible watermark (`memface verify VIDEO` finds it, also after "
                "re-encoding) and, where the Space has a signing key, signed C2PA content credentials. Only adapt and "
                "share footage of people "
                "who agreed to it.")
            with gr.Tab("Generate", id="generate"):
                with gr.Row():
                    with gr.Column():
                        speaker = gr.Dropdown(self.choices({}), value=DEFAULT_CHOICE, allow_custom_value=True,
                                              label="speaker", elem_id="speaker",
                                              info="the demo speaker, one adapted in this session, or type a Hub "
                                                   "speaker id (user/name)")
                        text = gr.Textbox(label="text to be spoken (espeak-ng)", elem_id="text",
                                          max_lines=4, placeholder="Bob and Pam met by the map.")
                        audio = gr.Audio(sources=["upload", "microphone"], type="filepath", elem_id="audio",
                                         label=f"…or speech: upload or record, up to {config.max_audio_seconds:g} s "
                                               "(used instead of the text)")
                        generate_button = gr.Button("Generate", variant="primary", elem_id="generate-button")
                    with gr.Column():
                        live = gr.Video(label="as it is made (synthetic)", streaming=True, autoplay=True,
                                        interactive=False, elem_id="live-video", height=420,
                                        visible=self.streaming)
                        video = gr.Video(label="talking video (synthetic)", interactive=False, elem_id="output-video",
                                         height=420)
                        summary = gr.JSON(label="generation", elem_id="generation-summary")
                gr.Examples([[DEFAULT_CHOICE, None, sentence] for sentence in EXAMPLE_TEXTS],
                            inputs=[speaker, audio, text], cache_examples=False)
            with gr.Tab("Adapt", id="adapt"):
                with gr.Row():
                    with gr.Column():
                        upload = gr.Video(sources=["upload", "webcam"], elem_id="adapt-video", height=320,
                                          label=f"{config.min_adapt_seconds:g}–{config.max_adapt_seconds:g} s of "
                                                "video of one person, face visible")
                        name = gr.Textbox(label="speaker name", placeholder="e.g. alice", elem_id="adapt-name")
                        consent = gr.Checkbox(label="The person in this video agreed to being adapted into a "
                                                    "talking-face model.", elem_id="adapt-consent")
                        adapt_button = gr.Button("Adapt", variant="primary", elem_id="adapt-button")
                    with gr.Column():
                        sheet = gr.Image(label="speaker memory: the chosen mouth patches", type="filepath",
                                         interactive=False, elem_id="memory-sheet", format="png")
                        adapt_summary = gr.JSON(label="adaptation", elem_id="adapt-summary")
            with gr.Tab("Share", id="share"):
                gr.Markdown("Push an adapted speaker to the Hub as its own repo (private unless you untick the box), "
                            "with a card recording its license and consent, under **your** account: sign in with "
                            "Hugging Face; your permission is used for this upload only and never stored."
                            if self.login else
                            "Push an adapted speaker to the Hub as its own repo, with a card recording its license "
                            "and consent, under your account. Sign-in with Hugging Face is offered when this app "
                            "runs as a Space (or with `--login`); from `gradio_client`, pass "
                            "`Client(..., oauth_token=...)`.")
                if self.login:
                    gr.LoginButton(elem_id="share-login")
                with gr.Row():
                    with gr.Column():
                        share_speaker = gr.Dropdown([], label="adapted speaker", elem_id="share-speaker",
                                                    allow_custom_value=True)
                        repo = gr.Textbox(label="Hub repo", placeholder="your-name/my-speaker", elem_id="share-repo")
                        private = gr.Checkbox(label="private repo", value=True)
                    with gr.Column():
                        license = gr.Dropdown(LICENSES, value="cc-by-nc-4.0", allow_custom_value=True, label="license")
                        consent_text = gr.Textbox(label="consent statement (who agreed to what)", lines=2,
                                                  placeholder="Recorded and shared with the written consent of the "
                                                              "person shown, for research demos.")
                        source = gr.Textbox(label="source of the video (optional)", lines=2)
                push_button = gr.Button("Push to the Hub", variant="primary")
                pushed = gr.Textbox(label="repo URL", interactive=False)
            with gr.Tab("Inspect", id="inspect"):
                gr.Markdown("For the last generated clip: which entries of the speaker's explicit memory (the mouth "
                            "patches shown in Adapt) the renderer read at each frame, and the patch it read most at "
                            "a few frames (`f` frame, `e` entry).")
                heatmap = gr.Image(label="memory entries read per frame", type="filepath", interactive=False,
                                   format="png", elem_id="retrieval-heatmap")
                strip = gr.Image(label="top patch of sampled frames", type="filepath", interactive=False,
                                 format="png", elem_id="retrieval-strip")
            speakers_json = gr.JSON(visible=False)

            generate_outputs = [video, summary, heatmap, strip]
            if self.streaming:      # the page streams the video while it is made; /generate returns it whole
                generate_button.click(self.generate_live, [speaker, audio, text, session], [live, *generate_outputs],
                                      api_name="generate_live", concurrency_id="generate")
                text.submit(self.generate_live, [speaker, audio, text, session], [live, *generate_outputs],
                            api_visibility="private", concurrency_id="generate")
                gr.Button(visible=False).click(self.generate, [speaker, audio, text, session], generate_outputs,
                                               api_name="generate", concurrency_id="generate")
            else:
                generate_button.click(self.generate, [speaker, audio, text, session], generate_outputs,
                                      api_name="generate", concurrency_id="generate")
                text.submit(self.generate, [speaker, audio, text, session], generate_outputs,
                            api_visibility="private", concurrency_id="generate")
            adapt_button.click(self.adapt, [upload, name, consent, session], [sheet, adapt_summary, session],
                               api_name="adapt", concurrency_limit=1, concurrency_id="adapt").success(
                self.refresh_choosers, [session, adapt_summary], [speaker, share_speaker], api_visibility="private",
                queue=False)
            push_button.click(self.push, [share_speaker, repo, license, consent_text, source, private, session],
                              pushed, api_name="push", concurrency_limit=2, concurrency_id="push")
            gr.Button(visible=False).click(self.speakers, session, speakers_json, api_name="speakers",
                                           queue=False)
        return demo.queue(default_concurrency_limit=config.concurrency, max_size=config.queue_size)

    def launch(self, host: str = "127.0.0.1", port: int | None = 7860, **kwargs) -> tuple[gr.Blocks, str]:
        """Serve the UI; returns ``(blocks, url)``. ``prevent_thread_lock=True`` returns at once."""
        demo = self.blocks()
        # outputs are handed to gradio from videos/ and pictures/; adapted speakers (a person's likeness) never
        _, url, _ = demo.launch(server_name=host, server_port=port, max_file_size=self.config.max_file_size,
                                allowed_paths=[str(self.work / "videos"), str(self.work / "pictures")],
                                blocked_paths=[str(self.work / "speakers")], ssr_mode=False, show_error=False,
                                run_history=False,   # the browser would keep every run's inputs, tokens included
                                **kwargs)
        return demo, url


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    space = MemFaceSpace(config_from_args(args))
    space.launch(args.host, args.port)


if __name__ == "__main__":
    main()
