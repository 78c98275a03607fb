"""memface_hub — MemFace talking-face generation with implicit and explicit memories.

Heavy parts (torch, MediaPipe, transformers) are imported by the submodules that need
them, never at package import time: the names below load on first use.

    from memface_hub import MemFacePipeline, load_speaker
"""

__version__ = "0.1.0"

from .errors import MemFaceInputError

_LAZY = {
    "MemFacePipeline": "pipeline", "load_speaker": "pipeline", "GenerationOutput": "pipeline",
    "SpeakerMemory": "speaker", "list_speakers": "speaker",
    "MemFaceAudioToExpression": "a2e", "MemFaceRenderer": "renderer",
}

__all__ = ["MemFaceInputError", "__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'memface_hub' has no attribute {name!r}")
