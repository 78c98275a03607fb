"""Video and audio I/O through the ffmpeg binary that ``imageio-ffmpeg`` ships."""

from .audio import AUDIO_SAMPLE_RATE, load_audio, write_wav
from .video import VideoInfo, VideoWriter, iter_frames, probe, read_frames

__all__ = [
    "AUDIO_SAMPLE_RATE",
    "VideoInfo",
    "VideoWriter",
    "iter_frames",
    "load_audio",
    "probe",
    "read_frames",
    "write_wav",
]
