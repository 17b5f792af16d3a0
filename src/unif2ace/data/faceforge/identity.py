"""Identity and scene parameters of a FaceForge face.

*Identity* parameters (keys ``id_*``) describe who the person is: face geometry and proportions,
skin and hair hue jitter, where their mole sits. They are uniform in [-1, 1]; the renderer maps
each onto a plausible physical range, so 0 is the average face. *Scene* parameters (keys
``scene_*``) describe the photo: small head-pose jitter, framing, lighting, background and
clothing. Keeping the two apart lets a later identity encoder be trained to recover the ``id_*``
block alone, invariant to the ``scene_*`` block.
"""

from __future__ import annotations

import math

import numpy as np

from ...errors import UserError

IDENTITY_KEYS: tuple[str, ...] = (
    "id_face_width",  # head half-width scale
    "id_face_height",  # head half-height scale
    "id_jaw_width",  # lower-face width
    "id_chin_length",  # chin drop
    "id_forehead",  # upper-face width
    "id_eye_spacing",  # distance between the eyes
    "id_eye_size",  # eye opening size
    "id_eye_height",  # eye line position
    "id_eye_tilt",  # canthal tilt (outer corners up/down)
    "id_brow_height",  # brow distance above the eyes
    "id_brow_thickness",  # brow stroke thickness
    "id_nose_length",
    "id_nose_width",
    "id_mouth_width",
    "id_mouth_height",  # mouth position
    "id_lip_thickness",
    "id_ear_size",
    "id_ear_height",
    "id_neck_width",
    "id_skin_hue",  # skin hue/undertone jitter around the labelled tone
    "id_skin_value",  # skin brightness jitter
    "id_hair_hue",  # hair hue jitter around the labelled colour
    "id_hair_value",  # hair brightness jitter
    "id_iris_hue",  # iris shade jitter around the labelled eye colour
    "id_mole_x",  # mole position on the face
    "id_mole_y",
)

SCENE_KEYS: tuple[str, ...] = (
    "scene_yaw",  # pose jitter in [-1, 1] (added to the labelled head turn)
    "scene_roll",  # tilt jitter in [-1, 1] (added to the labelled head tilt)
    "scene_scale",  # framing: head size jitter in [-1, 1]
    "scene_offset_x",  # framing: head position jitter in [-1, 1]
    "scene_offset_y",
    "scene_light_azimuth",  # light direction in the image plane, radians in [0, 2 pi)
    "scene_light_elevation",  # in [0, 1]: 0 grazing from the side, 1 frontal
    "scene_light_intensity",  # in [0, 1]: strength of the shading
    "scene_bg_hue",  # background colour (HSV in [0, 1])
    "scene_bg_saturation",
    "scene_bg_value",
    "scene_bg_hue_shift",  # second gradient colour's hue offset in [-1, 1]
    "scene_bg_gradient",  # gradient strength in [0, 1]
    "scene_bg_angle",  # gradient direction, radians in [0, 2 pi)
    "scene_clothing_hue",
    "scene_clothing_saturation",
    "scene_clothing_value",
    "scene_neckline",  # in [0, 1]: crew / V / collar
)

ALL_KEYS = IDENTITY_KEYS + SCENE_KEYS


def sample_identity(rng: np.random.Generator) -> dict[str, float]:
    """Sample one person's identity parameters and one photo's scene parameters.

    Args:
        rng: the only source of randomness.

    Returns:
        ``{key: float}`` for every key in :data:`IDENTITY_KEYS` (uniform in [-1, 1]) and
        :data:`SCENE_KEYS` (ranges documented next to each key). JSON-serialisable.
    """
    out = {k: float(rng.uniform(-1.0, 1.0)) for k in IDENTITY_KEYS}
    jit = rng.uniform(-1.0, 1.0, size=5)
    out.update(
        {
            "scene_yaw": float(jit[0]),
            "scene_roll": float(jit[1]),
            "scene_scale": float(jit[2]),
            "scene_offset_x": float(jit[3]),
            "scene_offset_y": float(jit[4]),
            "scene_light_azimuth": float(rng.uniform(0.0, 2 * math.pi)),
            "scene_light_elevation": float(rng.uniform(0.35, 1.0)),
            "scene_light_intensity": float(rng.uniform(0.2, 1.0)),
            "scene_bg_hue": float(rng.uniform(0.0, 1.0)),
            "scene_bg_saturation": float(rng.uniform(0.05, 0.55)),
            "scene_bg_value": float(rng.uniform(0.35, 0.95)),
            "scene_bg_hue_shift": float(rng.uniform(-1.0, 1.0)),
            "scene_bg_gradient": float(rng.uniform(0.0, 1.0)),
            "scene_bg_angle": float(rng.uniform(0.0, 2 * math.pi)),
            "scene_clothing_hue": float(rng.uniform(0.0, 1.0)),
            "scene_clothing_saturation": float(rng.uniform(0.0, 0.8)),
            "scene_clothing_value": float(rng.uniform(0.15, 0.9)),
            "scene_neckline": float(rng.uniform(0.0, 1.0)),
        }
    )
    return out


def check_identity(identity: dict) -> None:
    """Raise UserError when ``identity`` lacks a key or holds a non-number."""
    missing = [k for k in ALL_KEYS if k not in identity]
    if missing:
        raise UserError(
            f"identity lacks key(s) {', '.join(missing)}; build it with sample_identity(rng)"
        )
    bad = [
        k
        for k in ALL_KEYS
        if not isinstance(identity[k], (int, float))
        or isinstance(identity[k], bool)
        or not math.isfinite(identity[k])
    ]
    if bad:
        raise UserError(f"identity key(s) {', '.join(bad)} must be finite numbers")
