"""Index sets of the MediaPipe face mesh (478 landmarks) that the face model uses.

The mesh topology is fixed, so these are constants. Orders matter where a name says
``_LOOP``: the indices walk around the contour, ready for polygon drawing.
"""

from __future__ import annotations

NUM_LANDMARKS = 478
NUM_BLENDSHAPES = 52

# Outer eye corners: their distance defines the canonical unit (docs/EVALUATION.md).
RIGHT_EYE_OUTER = 33
LEFT_EYE_OUTER = 263
# Inner-lip midpoints: their distance is the mouth opening o_t.
UPPER_INNER_LIP = 13
LOWER_INNER_LIP = 14
NOSE_TIP = 1
CHIN = 152

OUTER_LIPS_LOOP = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409,
                   291, 375, 321, 405, 314, 17, 84, 181, 91, 146)
INNER_LIPS_LOOP = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415,
                   308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
LIPS = OUTER_LIPS_LOOP + INNER_LIPS_LOOP  # the 40 lip landmarks (LMD uses these)

# Lower half of the face oval, from the right jaw hinge round the chin to the left one.
JAW_LINE = (132, 58, 172, 136, 150, 149, 176, 148, 152,
            377, 400, 378, 379, 365, 397, 288, 361)
# Lower-face interior points between the lips and the jaw line, and above the upper lip.
LOWER_FACE_INTERIOR = (18, 200, 199, 175, 83, 313, 57, 287, 43, 273, 106, 335,
                       182, 406, 194, 418, 32, 262, 201, 421, 208, 428, 169, 394,
                       210, 430, 135, 364, 212, 432, 214, 434, 186, 410, 92, 322,
                       165, 391, 167, 393, 164, 204, 424, 211, 431)

# The canonical mouth-and-jaw vertices: what the mouth model, the a2e model's vertex
# loss and the speaker memory's keys are made of. LIPS come first, so that
# MOUTH_VERTICES[:40] are the lips.
MOUTH_VERTICES = LIPS + JAW_LINE + LOWER_FACE_INTERIOR

# Landmarks that move rigidly with the skull: forehead, nose, upper cheeks, temples.
# No mouth, jaw, eyes or eyebrows (docs/DESIGN.md §3).
RIGID = (10, 109, 67, 103, 338, 297, 332, 151, 9, 8, 168, 6, 197, 195, 5, 4, 1,
         19, 94, 2, 98, 327, 129, 358, 64, 294, 48, 278, 115, 344, 116, 345, 117,
         346, 118, 347, 119, 348, 120, 349, 100, 329, 47, 277, 217, 437, 126, 355,
         142, 371, 36, 266, 101, 330, 234, 454, 127, 356, 21, 251, 54, 284, 162, 389)

# Eyes (for blinks in the demo corpus): upper and lower lid contours, corner to corner.
RIGHT_EYE_UPPER = (33, 246, 161, 160, 159, 158, 157, 173, 133)
RIGHT_EYE_LOWER = (33, 7, 163, 144, 145, 153, 154, 155, 133)
LEFT_EYE_UPPER = (263, 466, 388, 387, 386, 385, 384, 398, 362)
LEFT_EYE_LOWER = (263, 249, 390, 373, 374, 380, 381, 382, 362)


def mouth_vertex_position(landmark: int) -> int:
    """Position of a mesh landmark inside :data:`MOUTH_VERTICES` (``ValueError`` if absent)."""
    try:
        return MOUTH_VERTICES.index(landmark)
    except ValueError:
        raise ValueError(f"landmark {landmark} is not one of the mouth vertices") from None
