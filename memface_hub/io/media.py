"""What ffmpeg says about a media file, and where ffmpeg is: shared by audio and video I/O."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg

from ..errors import MemFaceInputError


@dataclass(frozen=True)
class VideoInfo:
    """What ``ffmpeg -i`` says about a file."""

    path: str
    duration: float  # seconds (0.0 when unknown)
    has_video: bool
    has_audio: bool
    width: int = 0
    height: int = 0
    fps: float = 0.0


def ffmpeg_exe() -> str:
    return imageio_ffmpeg.get_ffmpeg_exe()


def _check_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise MemFaceInputError(path, "file not found")
    if not path.is_file():
        raise MemFaceInputError(path, "not a file")
    if path.stat().st_size == 0:
        raise MemFaceInputError(path, "empty file (0 bytes)")
    return path


_VIDEO_STREAM = re.compile(r"Stream #\S+.*?: Video: .*?(\d{2,5})x(\d{2,5})")
_FPS = re.compile(r"([\d.]+) (?:fps|tbr)")
_DURATION = re.compile(r"Duration: (\d+):(\d+):([\d.]+)")


def probe(path: str | os.PathLike) -> VideoInfo:
    """Streams and duration of a media file. Raises :class:`MemFaceInputError` if unreadable."""
    path = _check_file(path)
    result = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                            capture_output=True, text=True, errors="replace")
    text = result.stderr
    if "Invalid data found" in text or "Stream #" not in text:
        raise MemFaceInputError(path, "not a readable audio/video file")
    duration = 0.0
    match = _DURATION.search(text)
    if match:
        hours, minutes, seconds = match.groups()
        duration = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    video = _VIDEO_STREAM.search(text)
    width = height = 0
    fps = 0.0
    if video:
        width, height = int(video.group(1)), int(video.group(2))
        line = text[video.start():text.find("\n", video.start())]
        fps_match = _FPS.search(line)
        fps = float(fps_match.group(1)) if fps_match else 0.0
    # Cover art (attached_pic) is a "video" stream of an audio file, not a video.
    has_video = bool(video) and "attached pic" not in text[video.start():text.find("\n", video.start())]
    has_audio = re.search(r"Stream #\S+.*?: Audio: ", text) is not None
    return VideoInfo(str(path), duration, has_video, has_audio, width, height, fps)
