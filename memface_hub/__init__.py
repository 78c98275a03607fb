"""memface_hub — MemFace talking-face generation with implicit and explicit memories.

Heavy parts (torch, MediaPipe, transformers) are imported by the submodules that need
them, never at package import time.
"""

__version__ = "0.1.0"

from .errors import MemFaceInputError

__all__ = ["MemFaceInputError", "__version__"]
