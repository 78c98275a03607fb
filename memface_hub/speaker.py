"""SpeakerMemory: the renderer's explicit per-speaker memory (paper Sec. 3.3, Alg. 1) as an artifact.

Built from one preprocessed clip of a speaker: N entries (default 300) chosen by greedy
farthest-point selection on the RMS distance between canonical mouth vertices, so the entries
are as dissimilar as possible. Keys are the entries' canonical mouth vertices, values their
aligned mouth patches (uint8). The speaker's neutral mouth, the template video and its
per-frame poses and crop transforms travel with it, for generation.

Folder layout (docs/DESIGN.md §6), all validated on load; only JSON and safetensors are parsed:

    speaker.json          format, version, fps, crop layout, patch box, N, source hash, landmarker
    memory.safetensors    keys (N, V, 3) float32, values (N, 3, H, W) uint8, neutral (V, 3) float32,
                          frame_indices (N,) int64, and (version 2) details (N, 3, f·H, f·W) uint8: the same
                          mouth boxes cut from the video's frames at f× the crop's resolution (``detail_scale``
                          f in speaker.json), the memory's texture at the video's resolution
    tracks.safetensors    poses (T, 13) float32, crop_affines (T, 2, 3) float32, and (optional, older
                          folders lack it) face (T,) uint8: 1 where the template frame shows the face
    template.mp4          the speaker's video at 25 fps (the frames generation paints into)

On the Hub a speaker memory is its own repo (docs/DESIGN.md §6): the folder above plus a ``README.md`` card
(``push_to_hub``), tagged ``memface-speaker`` (``list_speakers``); ``from_pretrained`` also takes a repo id
and refuses repos holding pickle files before downloading anything.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from .a2e import A2E_DELTA_FILE
from .arrays_io import atomic_folder, check_arrays, load_arrays, save_arrays, write_text_atomic
from .artifact_json import read_json_file
from .errors import MemFaceInputError
from .explicit_memory import farthest_point_selection  # noqa: F401 (Alg. 1; re-exported)
from .face.crop import CropLayout
from .face.landmarks import MOUTH_VERTICES
from .hub import hub_file_list, refuse_token_like
from .io.shards import ClipShard, load_shard
from .io.video import MAX_SHORT_SIDE, VideoWriter, bounded_size, iter_frames, probe

logger = logging.getLogger(__name__)

SPEAKER_FORMAT = "memface-speaker-memory"
SPEAKER_FORMAT_VERSION = 2
READABLE_FORMAT_VERSIONS = (1, 2)            # version 1: no detail patches (the crop-resolution values serve)
MAX_DETAIL_SCALE = 2                         # detail patches at most 2× the crop (300 entries at crop 256: 43 MB)
SPEAKER_FILE = "speaker.json"
MEMORY_FILE = "memory.safetensors"
TRACKS_FILE = "tracks.safetensors"
TEMPLATE_FILE = "template.mp4"
MAX_ENTRIES = 4096
MAX_TEMPLATE_FRAMES = 25 * 600
MIN_FPS, MAX_FPS = 1, 120                    # frame rates a template may claim (ffmpeg is asked for this rate)
MIN_CROP_SIZE, MAX_CROP_SIZE = 32, 1024
CARD_FILE = "README.md"
DELTA_FILE = "renderer_delta.safetensors"      # optional fine-tuned renderer delta (training/adapt.py)
HUB_FILES = [SPEAKER_FILE, MEMORY_FILE, TRACKS_FILE, TEMPLATE_FILE, DELTA_FILE, A2E_DELTA_FILE, CARD_FILE]
SPEAKER_TAG = "memface-speaker"
SPEAKER_TAGS = [SPEAKER_TAG, "memface", "talking-face", "synthetic-media"]
# Licence identifiers the Hub accepts in a card's `license:` field ("other" needs license_name + license_link).
HUB_LICENSES = frozenset("""
apache-2.0 mit openrail bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0 bigcode-openrail-m
afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear c-uda cc cc0-1.0 cc-by-2.0
cc-by-2.5 cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0 cc-by-nc-4.0 cc-by-nd-4.0
cc-by-nc-nd-3.0 cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0 cdla-sharing-1.0
cdla-permissive-1.0 cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1 eupl-1.2 agpl-3.0 gfdl
gpl gpl-2.0 gpl-3.0 lgpl lgpl-2.1 lgpl-3.0 isc h-research intel-research lppl-1.3c ms-pl apple-ascl mpl-2.0
odc-by odbl openrail++ osl-3.0 postgresql ofl-1.1 ncsa unlicense zlib pddl lgpl-lr
fair-noncommercial-research-license unknown other""".split())
GATED_PROMPT = ("This repository holds a real person's likeness (a MemFace speaker memory). Access is granted by "
                "hand, for the purpose you state, and only for uses the person consented to; impersonation and "
                "deception are not allowed.")
GATED_FIELDS = {"Purpose of use": "text", "Affiliation": "text",
                "I will not use this likeness to impersonate or deceive anyone": "checkbox"}


ARTICULATION_GAIN_RANGE = (0.5, 2.0)      # what a speaker.json may hold (adaptation clips to 0.67–1.5)


def check_articulation(value, source) -> None:
    """``speaker.json``'s optional ``articulation``: ``{"gain": number in ARTICULATION_GAIN_RANGE, "a2e": the
    16-hex-digit fingerprint of the a2e model it was measured with}``; anything else is refused in one line."""
    if value is None:
        return
    low, high = ARTICULATION_GAIN_RANGE
    gain = value.get("gain") if isinstance(value, dict) else None
    fingerprint = value.get("a2e") if isinstance(value, dict) else None
    if (not isinstance(value, dict) or set(value) != {"gain", "a2e"} or isinstance(gain, bool)
            or not isinstance(gain, (int, float)) or not low <= gain <= high or not isinstance(fingerprint, str)
            or len(fingerprint) != 16 or any(c not in "0123456789abcdef" for c in fingerprint)):
        raise MemFaceInputError(source, f"field 'articulation' must be {{'gain': a number in [{low}, {high}], "
                                        f"'a2e': a 16-digit hex fingerprint}}, got {value!r:.80}")


@dataclass
class SpeakerMemory:
    """A speaker's explicit memory and template. ``N`` entries, ``T`` template frames."""

    keys: np.ndarray             # (N, V, 3) float32 canonical mouth vertices
    values: np.ndarray           # (N, 3, H, W) uint8 mouth patches (RGB)
    neutral: np.ndarray          # (V, 3) float32 the speaker's neutral mouth
    frame_indices: np.ndarray    # (N,) int64 template frame of each entry (leakage rule)
    poses: np.ndarray            # (T, 13) float32 canonical → frame similarity per template frame
    crop_affines: np.ndarray     # (T, 2, 3) float32 frame → crop per template frame
    meta: dict = field(default_factory=dict)
    template_path: Path | None = None
    face: np.ndarray | None = None   # (T,) bool: the template frame shows the face (None: every frame does)
    template_size: tuple[int, int] | None = None   # (width, height) to decode template_path at (None: as it is)
    details: np.ndarray | None = None   # (N, 3, f·H, f·W) uint8 the mouth patches at f = meta["detail_scale"]

    @property
    def num_entries(self) -> int:
        return int(self.keys.shape[0])

    @property
    def layout(self) -> CropLayout:
        return CropLayout(**self.meta["crop_layout"])

    def detail_patch(self, entry: int) -> tuple[np.ndarray, np.ndarray]:
        """Entry ``entry``'s mouth at the finest resolution the memory holds: the patch ``(h, w, 3)`` uint8 and
        its patch → crop similarity ``(2, 3)`` (``source_affine`` of :func:`~memface_hub.face.crop.transfer_detail`):
        the detail patch where one was stored, else the crop-resolution value itself."""
        top, _, left, _ = self.meta["patch_box"]
        if self.details is None:
            return self.values[entry].transpose(1, 2, 0), np.array([[1, 0, left], [0, 1, top]], np.float64)
        scale = int(self.meta["detail_scale"])
        to_patch = crop_to_detail(self.meta["patch_box"], scale)
        return self.details[entry].transpose(1, 2, 0), cv2.invertAffineTransform(to_patch)

    # -- building -----------------------------------------------------------------------------
    @classmethod
    def build(cls, shard: ClipShard | str | os.PathLike, num_entries: int = 300, name: str | None = None,
              source_video: str | os.PathLike | None = None, detail_scale: int | None = None) -> SpeakerMemory:
        """Build from a preprocessed clip (a shard folder or a loaded :class:`ClipShard`).

        The template video is the shard's source video (``source_video`` overrides the path
        recorded in the shard). The entries' mouth boxes are also cut from the video's own frames (not
        the compressed crops) at ``detail_scale`` × the crop's resolution (default: the video's frame
        pixels per crop pixel, rounded up, in [1, :data:`MAX_DETAIL_SCALE`]), so generation can give
        its output the memory's texture without decoding the template again.
        """
        shard = shard if isinstance(shard, ClipShard) else load_shard(shard)
        if not 1 <= num_entries <= MAX_ENTRIES:
            raise ValueError(f"num_entries must be in [1, {MAX_ENTRIES}], got {num_entries}")
        indices = np.sort(farthest_point_selection(shard.mouth_vertices, num_entries, shard.valid))
        layout = CropLayout(**shard.meta["crop_layout"])
        top, bottom, left, right = layout.mouth_box()
        wanted = set(indices.tolist())
        patches = {}
        for index, crop in enumerate(iter_frames(shard.crops_path)):
            if index in wanted:
                patches[index] = np.ascontiguousarray(crop[top:bottom, left:right].transpose(2, 0, 1))
            if len(patches) == len(wanted):
                break
        indices = np.array([i for i in indices if i in patches], np.int64)
        source = Path(source_video or shard.meta["source"])
        frame_size = tuple(shard.meta["frame_size"]) if shard.meta.get("frame_size") else None
        if detail_scale is None:
            detail_scale = native_detail_scale(shard.crop_affines[indices])
        if not 1 <= int(detail_scale) <= MAX_DETAIL_SCALE:
            raise ValueError(f"detail_scale must be in [1, {MAX_DETAIL_SCALE}], got {detail_scale}")
        details = detail_patches(source, shard.meta["fps"], frame_size, shard.crop_affines, indices,
                                 (top, bottom, left, right), int(detail_scale))
        meta = {
            "format": SPEAKER_FORMAT, "format_version": SPEAKER_FORMAT_VERSION,
            "name": name or shard.meta["clip_id"], "fps": shard.meta["fps"],
            "crop_layout": shard.meta["crop_layout"], "patch_box": [top, bottom, left, right],
            "num_entries": int(len(indices)), "num_template_frames": shard.num_frames,
            "source_sha256": shard.meta["source_sha256"], "landmarker": shard.meta["landmarker"],
            "num_mouth_vertices": len(MOUTH_VERTICES),
            "detail_scale": int(detail_scale),
        }
        memory = cls(shard.mouth_vertices[indices].astype(np.float32), np.stack([patches[i] for i in indices]),
                     shard.neutral_mouth.astype(np.float32), indices, shard.poses.as_array(),
                     shard.crop_affines.astype(np.float32), meta, template_path=source, face=shard.valid.copy(),
                     template_size=frame_size, details=details)
        logger.info("speaker memory %r: %d entries from %d frames", meta["name"], len(indices), shard.num_frames)
        return memory

    # -- files --------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write the folder layout atomically (a temporary folder renamed into place)."""
        directory = Path(directory)
        if directory.exists() and any(directory.iterdir()) and not (directory / SPEAKER_FILE).exists():
            raise MemFaceInputError(directory, "exists and is not a speaker memory; refusing to overwrite")
        if self.template_path is None or not Path(self.template_path).is_file():
            raise MemFaceInputError(self.template_path or "template", "template video not found")
        with atomic_folder(directory) as staging:
            arrays = {"keys": self.keys, "values": self.values, "neutral": self.neutral,
                      "frame_indices": self.frame_indices}
            meta = {key: value for key, value in self.meta.items() if key != "detail_scale"}
            if self.details is not None:
                arrays["details"], meta["detail_scale"] = self.details, int(self.meta["detail_scale"])
            save_arrays(staging / MEMORY_FILE, arrays)
            tracks = {"poses": self.poses, "crop_affines": self.crop_affines}
            if self.face is not None:
                tracks["face"] = self.face.astype(np.uint8)
            save_arrays(staging / TRACKS_FILE, tracks)
            template = Path(self.template_path)
            if template.name == TEMPLATE_FILE and self.template_size is None:
                shutil.copyfile(template, staging / TEMPLATE_FILE)
            else:                                  # from the source video, or scaled down to the bound
                with VideoWriter(staging / TEMPLATE_FILE, fps=self.meta["fps"]) as writer:
                    for frame in iter_frames(template, fps=self.meta["fps"], max_frames=len(self.poses),
                                             size=self.template_size):
                        writer.write(_even(frame))
            meta["format_version"] = SPEAKER_FORMAT_VERSION
            (staging / SPEAKER_FILE).write_text(json.dumps(meta, indent=1))
        self.template_path, self.template_size = directory / TEMPLATE_FILE, None
        return directory

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, revision: str | None = None,
                        token: str | bool | None = None, cache_dir: str | os.PathLike | None = None,
                        repo_type: str = "model", max_short_side: int | None = MAX_SHORT_SIDE) -> SpeakerMemory:
        """Load and validate a speaker-memory folder, or a Hub repo id (``"user/speaker"``).

        A path that exists is a folder; anything else is a repo on the Hub, downloaded into the Hub cache
        (``HF_HUB_OFFLINE=1``: read from the cache only). Anything malformed is a :class:`MemFaceInputError`.
        A template larger than ``max_short_side`` (default 1080p, see :func:`~memface_hub.io.video.bounded_size`)
        is read scaled down, its tracks scaled alike, so generation's memory and temporary disk stay bounded;
        ``max_short_side=None`` reads it at its own size.
        """
        if not Path(name_or_path).exists():
            return cls._from_hub(str(name_or_path), revision=revision, token=token, cache_dir=cache_dir,
                                 repo_type=repo_type, max_short_side=max_short_side)
        directory = Path(name_or_path)
        if not (directory / SPEAKER_FILE).is_file():
            raise MemFaceInputError(directory, f"not a speaker memory (no {SPEAKER_FILE})")
        meta = read_json_file(directory / SPEAKER_FILE)          # size, syntax, object and depth checked
        if meta.get("format") != SPEAKER_FORMAT:
            raise MemFaceInputError(directory, "not a memface speaker memory (wrong format field)")
        if meta.get("format_version") not in READABLE_FORMAT_VERSIONS:
            raise MemFaceInputError(directory, f"speaker memory format version {meta.get('format_version')!r} is "
                                    f"not supported (this memface_hub reads versions "
                                    f"{', '.join(map(str, READABLE_FORMAT_VERSIONS))})")
        memory = load_arrays(directory / MEMORY_FILE)
        tracks = load_arrays(directory / TRACKS_FILE)
        try:
            layout = CropLayout(**meta["crop_layout"])
            top, bottom, left, right = (int(v) for v in meta["patch_box"])
            count = int(meta["num_entries"])
        except (KeyError, TypeError, ValueError) as err:
            raise MemFaceInputError(directory / SPEAKER_FILE, f"malformed field ({err})") from None
        if not (0 <= top < bottom <= layout.size and 0 <= left < right <= layout.size) or not 1 <= count <= MAX_ENTRIES:
            raise MemFaceInputError(directory / SPEAKER_FILE, "patch box or entry count out of range")
        fps = meta.get("fps")
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not MIN_FPS <= fps <= MAX_FPS:
            raise MemFaceInputError(directory / SPEAKER_FILE,
                                    f"field 'fps' must be a number in [{MIN_FPS}, {MAX_FPS}], got {fps!r}")
        if not MIN_CROP_SIZE <= layout.size <= MAX_CROP_SIZE:
            raise MemFaceInputError(directory / SPEAKER_FILE, f"field 'crop_layout.size' must be in "
                                    f"[{MIN_CROP_SIZE}, {MAX_CROP_SIZE}], got {layout.size}")
        vertices = len(MOUTH_VERTICES)
        expected = {"keys": ((count, vertices, 3), np.float32),
                    "values": ((count, 3, bottom - top, right - left), np.uint8),
                    "neutral": ((vertices, 3), np.float32), "frame_indices": ((count,), np.int64)}
        scale = meta.get("detail_scale")
        if scale is not None:
            if isinstance(scale, bool) or not isinstance(scale, int) or not 1 <= scale <= MAX_DETAIL_SCALE:
                raise MemFaceInputError(directory / SPEAKER_FILE, f"field 'detail_scale' must be a whole number "
                                        f"in [1, {MAX_DETAIL_SCALE}], got {scale!r}")
            expected["details"] = ((count, 3, scale * (bottom - top), scale * (right - left)), np.uint8)
        check_arrays(memory, expected, directory / MEMORY_FILE)
        check_articulation(meta.get("articulation"), directory / SPEAKER_FILE)
        frames = tracks.get("poses", np.zeros((0,))).shape[0]
        if not 1 <= frames <= MAX_TEMPLATE_FRAMES:
            raise MemFaceInputError(directory / TRACKS_FILE,
                                    f"template has {frames} frames (1..{MAX_TEMPLATE_FRAMES} allowed)")
        check_arrays(tracks, {"poses": ((frames, 13), np.float32), "crop_affines": ((frames, 2, 3), np.float32),
                              **({"face": ((frames,), np.uint8)} if "face" in tracks else {})},
                      directory / TRACKS_FILE)
        if (memory["frame_indices"] < 0).any() or (memory["frame_indices"] >= frames).any():
            raise MemFaceInputError(directory / MEMORY_FILE, "frame_indices point outside the template")
        template = directory / TEMPLATE_FILE
        if not template.is_file():
            raise MemFaceInputError(directory, f"no {TEMPLATE_FILE}")
        info = probe(template)
        if not info.has_video or min(info.width, info.height) < 2:
            raise MemFaceInputError(template, "no video stream with a known frame size")
        size = bounded_size(info.width, info.height, max_short_side)
        poses, affines = tracks["poses"], tracks["crop_affines"]
        if size != (info.width, info.height):
            logger.info("%s: %d×%d template read at %d×%d (max_short_side=%s)", template, info.width, info.height,
                        *size, max_short_side)
            poses, affines = scale_tracks(poses, affines, size[0] / info.width, size[1] / info.height)
        else:
            size = None
        return cls(memory["keys"], memory["values"], memory["neutral"], memory["frame_indices"], poses,
                   affines, meta, template_path=template,
                   face=tracks["face"].astype(bool) if "face" in tracks else None, template_size=size,
                   details=memory.get("details"))

    # -- the Hub ------------------------------------------------------------------------------
    @classmethod
    def _from_hub(cls, repo_id: str, *, revision: str | None, token: str | bool | None,
                  cache_dir: str | os.PathLike | None, repo_type: str,
                  max_short_side: int | None = MAX_SHORT_SIDE) -> SpeakerMemory:
        """Check the repo's file list (online), download only the speaker files, load them as a folder."""
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import (
            HfHubHTTPError,
            HFValidationError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
        from huggingface_hub.utils import validate_repo_id

        try:
            validate_repo_id(repo_id)
        except HFValidationError:
            raise MemFaceInputError(repo_id, "no such folder, and not a Hub repo id (user/name)") from None
        try:
            # 1. look before downloading: pickle anywhere in the repo, or no speaker.json, is refused
            files = hub_file_list(repo_id, revision=revision, token=token, repo_type=repo_type)
            if files is not None and SPEAKER_FILE not in files:
                raise MemFaceInputError(repo_id, f"not a speaker memory (no {SPEAKER_FILE} in the repo)")
            # 2. only the speaker files, never anything else (offline or unreachable: the cached snapshot)
            folder = Path(snapshot_download(repo_id, repo_type=repo_type, revision=revision, token=token,
                                            cache_dir=cache_dir, allow_patterns=HUB_FILES,
                                            local_files_only=files is None))
        except RepositoryNotFoundError:
            raise MemFaceInputError(repo_id, "no such speaker memory on the Hub (no such repo, or a private "
                                    "one this token cannot see)") from None
        except RevisionNotFoundError:
            raise MemFaceInputError(repo_id, f"no such speaker memory on the Hub (no revision {revision!r})") from None
        except LocalEntryNotFoundError:
            raise MemFaceInputError(repo_id, "no such speaker memory in the local Hub cache, and the Hub is "
                                    "offline (HF_HUB_OFFLINE) or unreachable") from None
        except HfHubHTTPError as err:
            raise MemFaceInputError(repo_id, f"no such speaker memory on the Hub "
                                    f"({str(err).strip().splitlines()[0]})") from None
        # 3. the folder loader's checks, with errors naming the repo rather than the cache path
        try:
            return cls.from_pretrained(folder, max_short_side=max_short_side)
        except MemFaceInputError as err:
            source = Path(err.source)
            inside = source.relative_to(folder).as_posix() if source.is_relative_to(folder) else err.source
            raise MemFaceInputError(repo_id if inside == "." else f"{repo_id}/{inside}", err.problem) from None

    def push_to_hub(self, repo_id: str, *, license: str, consent: str, base_model: str | None = None,
                    source_description: str = "", private: bool = True, gated: bool = False,
                    license_name: str | None = None, license_link: str | None = None, token: str | None = None,
                    repo_type: str = "model", commit_message: str = "Upload MemFace speaker memory") -> str:
        """Upload as its own Hub repo, with a card; returns the repo's URL.

        ``license`` (a Hub licence identifier, e.g. ``"cc-by-nc-4.0"``; ``"other"`` with ``license_name`` and
        ``license_link``) and ``consent`` (who agreed to what, e.g. "Recorded and shared with the written
        consent of the person shown, for research demos") are required: this is a real person's likeness.
        The repo is **private** unless ``private=False``; ``gated=True`` makes visitors request access, stating
        their purpose, and the owner approve each request by hand. ``base_model`` is the pipeline repo the
        memory was made for. A ``renderer_delta.safetensors`` or ``a2e_delta.safetensors`` beside a loaded
        memory's ``speaker.json`` travels with it. The card is rendered and validated before the repo is
        created, so a bad card leaves nothing.
        """
        from huggingface_hub import HfApi, ModelCard

        refuse_token_like(repo_id)
        for field_name, value in (("license", license), ("consent", consent)):
            if not isinstance(value, str) or not value.strip():
                raise MemFaceInputError(repo_id, f"push_to_hub needs a non-empty {field_name}: a speaker memory "
                                        "is a person's likeness, shared only under stated terms and with consent")
        license = license.strip().lower()
        if license not in HUB_LICENSES:
            raise MemFaceInputError(repo_id, f"license {license!r} is not a Hub licence identifier (e.g. "
                                    "cc-by-nc-4.0, cc-by-4.0, apache-2.0, "
                                    "or 'other' with license_name and license_link)")
        if license == "other" and not (license_name and license_link):
            raise MemFaceInputError(repo_id, "license 'other' needs license_name and license_link")
        api = HfApi(token=token)
        if "/" not in repo_id:
            repo_id = f"{api.whoami()['name']}/{repo_id}"          # the card names the full repo id
        with tempfile.TemporaryDirectory(prefix="memface-speaker-push-") as work:
            # 1. the folder (a copy of self saves it, so self.template_path stays where it was) and its card
            folder = replace(self).save_pretrained(Path(work) / "speaker")
            source = Path(self.template_path).parent
            for delta in (DELTA_FILE, A2E_DELTA_FILE):                 # the adapted models travel with it
                if Path(self.template_path).name == TEMPLATE_FILE and (source / SPEAKER_FILE).is_file() \
                        and (source / delta).is_file():
                    shutil.copyfile(source / delta, folder / delta)
            card = self._card(repo_id, license, consent.strip(), base_model, source_description.strip(),
                              gated=gated, license_name=license_name, license_link=license_link)
            try:
                ModelCard(card).validate(repo_type=repo_type)        # on the Hub, before any repo exists
            except ValueError as err:
                raise MemFaceInputError(repo_id, f"the card was refused ({' '.join(str(err).split())})") from None
            write_text_atomic(folder / CARD_FILE, card)
            # 2. the repo (private by default; gated on request), then one commit with every file
            url = api.create_repo(repo_id, private=private, repo_type=repo_type, exist_ok=True)
            if gated:
                api.update_repo_settings(repo_id, gated="manual", repo_type=repo_type)
            api.upload_folder(repo_id=repo_id, folder_path=folder, repo_type=repo_type, commit_message=commit_message)
        logger.info("pushed speaker memory %r to %s", self.meta.get("name"), url)
        return str(url)

    def _card(self, repo_id: str, license: str, consent: str, base_model: str | None, source_description: str,
              gated: bool = False, license_name: str | None = None, license_link: str | None = None) -> str:
        """The README.md: YAML front matter (docs/DESIGN.md §6) and the filled-in ``model_cards/speaker_card.md``."""
        from huggingface_hub import ModelCardData

        from .cards import render_card

        extra = {"extra_gated_prompt": GATED_PROMPT, "extra_gated_fields": GATED_FIELDS} if gated else {}
        card_data = ModelCardData(library_name="memface_hub", license=license, tags=SPEAKER_TAGS,
                                  base_model=base_model, base_model_relation="adapter" if base_model else None,
                                  license_name=license_name, license_link=license_link, consent=consent, **extra)
        fps = float(self.meta["fps"])
        top, bottom, left, right = self.meta["patch_box"]
        return render_card("speaker_card.md", card_data, repo_id=repo_id, name=self.meta.get("name", repo_id),
                           num_entries=self.num_entries, patch_size=f"{bottom - top}×{right - left}",
                           num_frames=len(self.poses), fps=f"{fps:g}", seconds=f"{len(self.poses) / fps:.1f}",
                           landmarker=self.meta.get("landmarker", "unknown"),
                           source_sha256=self.meta.get("source_sha256", "unknown"),
                           source_description=source_description or "Not described by the uploader.",
                           consent=consent, license=license,
                           pipeline=f"`{base_model}`" if base_model else "one with a matching crop size")

    def contact_sheet(self, path: str | os.PathLike, columns: int = 20, scale: float = 0.5) -> Path:
        """A PNG grid of the memory's mouth patches, in selection order of their source frames."""
        patches = self.values.transpose(0, 2, 3, 1)                          # (N, H, W, 3)
        height, width = patches.shape[1:3]
        rows = int(np.ceil(len(patches) / columns))
        sheet = np.full((rows * height, columns * width, 3), 255, np.uint8)
        for index, patch in enumerate(patches):
            row, column = divmod(index, columns)
            sheet[row * height:(row + 1) * height, column * width:(column + 1) * width] = patch
        if scale != 1.0:
            sheet = cv2.resize(sheet, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        path = Path(path)
        cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
        return path


@dataclass
class SpeakerListing:
    """One speaker memory on the Hub, as ``list_speakers`` finds it."""

    repo_id: str
    author: str | None
    license: str | None
    base_model: str | list[str] | None


def list_speakers(author: str | None = None, token: str | bool | None = None) -> list[SpeakerListing]:
    """Speaker memories on the Hub: model repos tagged ``memface-speaker``, optionally by one user or org."""
    from huggingface_hub import HfApi

    models = HfApi(token=token).list_models(author=author, filter=SPEAKER_TAG, cardData=True)
    return [SpeakerListing(model.id, model.author, getattr(model.card_data, "license", None),
                           getattr(model.card_data, "base_model", None)) for model in models]


def scale_tracks(poses: np.ndarray, crop_affines: np.ndarray, scale_x: float, scale_y: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Poses ``(T, 13)`` and crop transforms ``(T, 2, 3)`` for frames resized by ``(scale_x, scale_y)``:
    canonical → frame gains the scale, frame → crop loses it, so crops and projected mouths are unchanged."""
    poses = poses.astype(np.float32, copy=True)
    poses[:, 0] *= scale_x                                    # similarity scale
    poses[:, 10:13] *= np.array([scale_x, scale_y, scale_x], np.float32)   # translation x, y, z
    crop_affines = crop_affines.astype(np.float32, copy=True)
    crop_affines[:, :, 0] /= scale_x
    crop_affines[:, :, 1] /= scale_y
    return poses, crop_affines


def crop_to_detail(box, scale: int) -> np.ndarray:
    """The crop → detail-patch similarity ``(2, 3)`` for the crop box ``(top, bottom, left, right)`` sampled
    at ``scale`` × the crop's resolution (pixel centres: crop pixel ``left`` covers patch pixels 0..scale-1)."""
    top, _, left, _ = box
    shift = (scale - 1) / 2
    return np.array([[scale, 0, shift - scale * left], [0, scale, shift - scale * top]], np.float64)


def native_detail_scale(crop_affines: np.ndarray) -> int:
    """Frame pixels per crop pixel (median over the frame → crop transforms ``(n, 2, 3)``), rounded up,
    clamped to ``[1, MAX_DETAIL_SCALE]``: the resolution at which the video still holds mouth detail."""
    crop_per_frame = np.sqrt(np.abs(np.linalg.det(crop_affines[:, :, :2].astype(np.float64))))
    ratio = float(np.median(1.0 / np.maximum(crop_per_frame, 1e-6)))
    return int(np.clip(np.ceil(ratio - 0.1), 1, MAX_DETAIL_SCALE))      # up to 1.1: the crop holds it already


def detail_patches(video: str | os.PathLike, fps: float, size: tuple[int, int] | None, crop_affines: np.ndarray,
                   indices: np.ndarray, box, scale: int) -> np.ndarray:
    """The crop ``box`` of frames ``indices`` of ``video`` (read at ``fps`` and ``size`` as the template is),
    sampled from the frames at ``scale`` × the crop's resolution → ``(n, 3, scale·h, scale·w)`` uint8."""
    top, bottom, left, right = box
    shape = (scale * (right - left), scale * (bottom - top))
    to_detail = np.vstack([crop_to_detail(box, scale), [0, 0, 1]])
    wanted = {int(index): slot for slot, index in enumerate(indices)}
    patches = np.zeros((len(indices), 3, shape[1], shape[0]), np.uint8)
    found = 0
    for index, frame in enumerate(iter_frames(video, fps=fps, max_frames=int(max(indices)) + 1, size=size)):
        if index in wanted:
            affine = (to_detail @ np.vstack([crop_affines[index], [0, 0, 1]]))[:2]
            patch = cv2.warpAffine(frame, affine, shape, flags=cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REPLICATE)
            patches[wanted[index]] = patch.transpose(2, 0, 1)
            found += 1
    if found != len(indices):
        raise MemFaceInputError(video, f"has {found} of the {len(indices)} frames the memory's entries come from")
    return patches


def _even(frame: np.ndarray) -> np.ndarray:
    """Crop a frame to even height and width (H.264 needs them)."""
    height, width = frame.shape[:2]
    return frame[: height - height % 2, : width - width % 2]
