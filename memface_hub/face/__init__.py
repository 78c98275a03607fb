"""Face model: tracking, pose and canonical mouth geometry, mouth model, crops, sketches."""

from .crop import CropLayout, crop_transforms, feathered_mask, paste_back, warp_to_crop
from .geometry import Poses, canonical_face, canonical_mouth_vertices, fit_poses, mouth_opening, neutral_mouth, umeyama
from .mouth_model import MouthModel
from .tracker import FaceTrack, FaceTracker

__all__ = [
    "CropLayout", "FaceTrack", "FaceTracker", "MouthModel", "Poses", "canonical_face",
    "canonical_mouth_vertices", "crop_transforms", "feathered_mask", "fit_poses", "mouth_opening",
    "neutral_mouth", "paste_back", "umeyama", "warp_to_crop",
]
