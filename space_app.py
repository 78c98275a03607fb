"""Gradio Space for memface_hub (thin: all logic lives in the package).

For now it exposes the foundation: upload a clip, preprocess it (track, align, crop), and see the
aligned crops and the tracking summary. Adapt / generate / share arrive with the renderer and
pipeline (see the project's issues).

    python space_app.py            # http://127.0.0.1:7860
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import gradio as gr

from memface_hub.data.preprocess import preprocess_clip
from memface_hub.errors import MemFaceInputError

logger = logging.getLogger("memface_hub.space")
MAX_SECONDS = 60.0
WORK = Path(tempfile.mkdtemp(prefix="memface-space-"))


def preprocess(video_path: str | None) -> tuple[str, dict]:
    """Preprocess one uploaded clip; returns the aligned-crops video and a summary."""
    if not video_path:
        raise gr.Error("Upload a video first.")
    try:
        result = preprocess_clip(video_path, WORK, require_audio=False, max_seconds=MAX_SECONDS)
    except (MemFaceInputError, FileNotFoundError) as err:
        raise gr.Error(str(err)) from None
    shard = WORK / result.clip_id
    return str(shard / "crops.mp4"), {"frames": result.frames, "frames_tracked": result.frames_tracked,
                                      "frames_dropped": result.frames_dropped, "seconds": round(result.seconds, 2)}


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="memface_hub") as demo:
        gr.Markdown("# memface_hub\nUpload up to 60 s of video of one person: it is tracked, aligned and cropped "
                    "the way MemFace's renderer sees it. Only use footage of people who agreed to it.")
        with gr.Row():
            upload = gr.Video(label="video of one person", sources=["upload"])
            crops = gr.Video(label="aligned crops")
        summary = gr.JSON(label="tracking summary")
        gr.Button("Preprocess").click(preprocess, inputs=upload, outputs=[crops, summary], api_name="preprocess")
    return demo


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    build_demo().queue(default_concurrency_limit=1).launch(server_name="127.0.0.1")
