"""Head, body and skin layers of the FaceForge renderer: background, shoulders, neck, ears,
face outline (face shape), and skin texture (freckles, moles, wrinkles, cheeks, age lines).

Coordinates are head-local (render_canvas.Frame); ``sp`` is a render_spec.Spec.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from .render_canvas import Canvas, bezier, ellipse, mix, rgba, shade, soft_blob
from .render_spec import Spec

FACE_DZ = 0.3  # depth of the face outline: under yaw it moves with the features
SKULL_DZ = -0.2  # depth of the skull's side outline: under yaw it moves the other way


def background(size: int, c1, c2, angle: float, gradient: float) -> Image.Image:
    """Linear two-colour gradient (computed at 16x16 and upsampled; it is smooth)."""
    g = np.linspace(-1.0, 1.0, 16)
    xx, yy = np.meshgrid(g, g)
    t = np.clip(0.5 + 0.5 * (xx * math.cos(angle) + yy * math.sin(angle)), 0, 1)[..., None]
    t = t * (0.3 + 0.7 * gradient)
    img = (1 - t) * np.asarray(c1)[None, None] + t * np.asarray(c2)[None, None]
    small = Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8), "RGB")
    return small.resize((size, size), Image.BILINEAR)


def head_outline(sp: Spec, grow: float = 0.0, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Closed face outline (face shape), optionally grown outwards by ``grow`` head units."""
    th = np.linspace(0.0, math.pi, n)
    y = -sp.hb * np.cos(th)
    x = np.array([sp.half_width(v) for v in y]) + grow
    y = y * (sp.hb + grow) / sp.hb
    return np.concatenate([x, -x[::-1]]), np.concatenate([y, y[::-1]])


def outline_dz(sp: Spec, y_N: np.ndarray) -> np.ndarray:
    """Depth offset of face-outline points: the face plane, and the chin jutting forward."""
    y = np.asarray(y_N)
    lower = np.clip((y + 0.4) / 0.8, 0.0, 1.0)  # 0 on the cranium, 1 from the cheeks down
    return FACE_DZ * lower * lower * (3 - 2 * lower) + 0.25 * np.clip(y / sp.hb, 0.0, 1.0)


def clothes(cv: Canvas, sp: Spec, idn: dict) -> None:
    """Shoulders in the clothing colour (drawn in the un-rotated body frame)."""
    sw = 1.95 if sp.male else 1.65
    top, nw = sp.hb + 0.5, sp.neck_w
    cloth = _clothing_colour(idn)
    xs, ys = bezier((nw * 0.9, top), (sw * 0.8, top + 0.05), (sw, top + 0.75), n=10)
    x = np.concatenate([xs, [sw + 0.3, -sw - 0.3], -xs[::-1]])
    y = np.concatenate([ys, [top + 4, top + 4], ys[::-1]])
    cv.poly(x, y, rgba(cloth))


def neck(cv: Canvas, sp: Spec, idn: dict) -> None:
    """Neck down to the neckline (crew, V or open collar), and the head's shadow on it."""
    top, nw = sp.hb + 0.5, sp.neck_w
    cloth = _clothing_colour(idn)
    style = float(idn["scene_neckline"])
    if style < 0.4:  # crew neck: round bottom
        nx, ny = join_arc(nw, top)
    else:
        nx = [-nw, -nw * 1.08, 0.0, nw * 1.08, nw]
        ny = [0.2, top + 0.15, top + 0.9, top + 0.15, 0.2]
    cv.poly(nx, ny, rgba(sp.skin))
    cv.line(nx[1:-1], ny[1:-1], shade(cloth, 0.6), 0.04)
    if style >= 0.75:  # shirt collar points
        for s in (-1, 1):
            cv.poly(
                [s * nw * 1.1, s * nw * 0.2, s * nw * 1.6],
                [top + 0.05, top + 0.75, top + 0.55],
                rgba(shade(cloth, 1.35)),
            )
    soft_blob(cv, 0.0, sp.hb + 0.05, nw * 0.95, 0.3, (40, 20, 10), 70, rings=3)


def join_arc(nw: float, top: float) -> tuple[list, list]:
    x, y = ellipse(0.0, top + 0.1, nw * 1.1, 0.3, n=14, t0=0.0, t1=math.pi)
    return [nw] + list(x) + [-nw], [0.2] + list(y) + [0.2]


def _clothing_colour(idn: dict) -> tuple:
    from .render_canvas import hsv

    return hsv(
        float(idn["scene_clothing_hue"]),
        float(idn["scene_clothing_saturation"]),
        float(idn["scene_clothing_value"]),
    )


def ears(cv: Canvas, sp: Spec) -> list[tuple[float, float]]:
    """Both ears (behind the face plane, so a turned head hides one). Returns lobe points."""
    lobes = []
    rx, ry = 0.13 * sp.ear_s, 0.23 * sp.ear_s
    for s in (-1, 1):
        cx = s * (sp.half_width(sp.ear_y) + rx * 0.45)
        x, y = ellipse(cx, sp.ear_y, rx, ry, n=20, rot=s * 0.15)
        cv.poly(x, y, rgba(sp.skin), dz=-0.3, outline=shade(sp.skin, 0.7), width=0.015)
        ix, iy = ellipse(
            cx - s * 0.01,
            sp.ear_y - 0.01,
            rx * 0.55,
            ry * 0.6,
            n=12,
            t0=-math.pi / 2,
            t1=math.pi / 2,
            rot=s * 0.15 + (math.pi if s < 0 else 0),
        )
        cv.line(ix, iy, shade(sp.skin, 0.68), 0.03, dz=-0.3)
        lobes.append((cx + s * 0.01, sp.ear_y + ry * 0.82))
    return lobes


def head(cv: Canvas, sp: Spec) -> None:
    """Face outline in skin colour (double chin drawn below it first)."""
    if sp.eff["double_chin"]:
        x, y = ellipse(0.0, sp.hb - 0.02, 0.5, 0.24, n=24)
        cv.poly(x, y, rgba(shade(sp.skin, 0.97)), dz=FACE_DZ + 0.2)
        cx, cy = ellipse(0.0, sp.hb - 0.02, 0.46, 0.22, n=14, t0=0.35, t1=math.pi - 0.35)
        cv.line(cx, cy, shade(sp.skin, 0.62, 200), 0.03, dz=FACE_DZ + 0.2)
    x, y = head_outline(sp)
    cv.poly(x, y, rgba(sp.skin), dz=SKULL_DZ)  # side of the skull, seen when the head turns
    dz = outline_dz(sp, y)
    cv.poly(x, y, rgba(sp.skin), dz=dz)
    n = len(y) // 2
    for s, part in ((1, slice(0, n)), (-1, slice(n, None))):
        # Jaw and chin contour; on the side turned away from the viewer only the chin shows.
        y0 = sp.ear_y + 0.1 if s * cv.frame.yaw >= 0 else sp.mouth_y
        kk = np.nonzero(y[part] > y0)[0] + part.indices(len(y))[0]
        cv.line(x[kk], y[kk], shade(sp.skin, 0.75, 110), 0.02, dz=dz[kk])
    if sp.eff["double_chin"]:
        cx, cy = ellipse(0.0, sp.hb - 0.1, 0.26, 0.06, n=10, t0=0.4, t1=math.pi - 0.4)
        cv.line(cx, cy, shade(sp.skin, 0.7, 170), 0.022)
    if sp.eff.get("bald"):  # scalp shine
        soft_blob(cv, -0.25, -sp.hb * 0.78, 0.3, 0.12, (255, 255, 255), 120, rings=3, dz=0.1)


def skin_details(cv: Canvas, sp: Spec, rng: np.random.Generator) -> None:
    """Cheekbones, blush, freckles, mole, wrinkles and age lines (before eyes and mouth)."""
    eff, sk = sp.eff, sp.skin
    ey = sp.eye_y
    if eff["high_cheekbones"]:
        for s in (-1, 1):
            soft_blob(cv, s * 0.6, ey + 0.2, 0.25, 0.09, shade(sk, 1.4), 220, rings=3)
            soft_blob(cv, s * 0.7, ey + 0.44, 0.22, 0.06, shade(sk, 0.62), 130, rings=3)
    if eff["rosy_cheeks"]:
        for s in (-1, 1):
            soft_blob(cv, s * 0.55, ey + 0.38, 0.21, 0.14, (236, 70, 90), 190, rings=4)
    if eff["freckles"]:
        _freckles(cv, sp, rng)
    if eff["moles"]:
        mx, my = sp.mole
        cv.dots([mx], [ey + my], 0.045 * cv.detail, (40, 22, 16, 255))
    _lines(cv, sp)


def _freckles(cv: Canvas, sp: Spec, rng: np.random.Generator) -> None:
    n = 70
    side = rng.choice([-1.0, 1.0], size=n)
    r = np.sqrt(rng.uniform(0, 1, n))
    t = rng.uniform(0, 2 * math.pi, n)
    x = side * 0.38 + r * 0.24 * np.cos(t)
    y = sp.eye_y + 0.28 + r * 0.15 * np.sin(t)
    x[:12], y[:12] = rng.uniform(-0.14, 0.14, 12), sp.eye_y + rng.uniform(0.1, 0.3, 12)
    col = mix(sp.skin, (120, 60, 30), 0.55, 235)
    cv.dots(x, y, 0.018 * cv.detail, col)


def _lines(cv: Canvas, sp: Spec) -> None:
    """Wrinkles, age sagging, frown/forehead/nose lines."""
    eff, ey, e, d = sp.eff, sp.eye_y, sp.expr, cv.detail
    dark = shade(sp.skin, 0.6, 200)
    faint = shade(sp.skin, 0.66, 150)
    fy = ey - sp.brow_gap - 0.2 - e.brow_lift
    if eff["wrinkles"]:
        for i in range(3):
            x, y = bezier(
                (-0.45, fy - i * 0.09), (0.0, fy - i * 0.09 - 0.04), (0.45, fy - i * 0.09)
            )
            cv.line(x, y, dark, 0.022 * d)
        for s in (-1, 1):  # crow's feet
            ox = s * (sp.eye_x + sp.eye_rx + 0.04)
            for k in (-1, 0, 1):
                cv.line([ox, ox + s * 0.1], [ey + k * 0.04, ey + k * 0.07], dark, 0.018 * d)
    elif e.forehead_lines:
        for i in range(2):
            x, y = bezier(
                (-0.35, fy - i * 0.08), (0.0, fy - i * 0.08 - 0.03), (0.35, fy - i * 0.08)
            )
            cv.line(x, y, faint, 0.016 * d)
    if e.frown_lines:
        for s in (-1, 1):
            cv.line([s * 0.05, s * 0.07], [ey - 0.1, ey - 0.25], dark, 0.022 * d)
    if e.nose_wrinkle:
        for i in range(3):
            cv.line([-0.08, 0.08], [ey + 0.03 + i * 0.04, ey + 0.03 + i * 0.04], faint, 0.016 * d)
    if sp.age != "young" or eff["wrinkles"]:
        old = sp.age == "old" or eff["wrinkles"]
        col = dark if old else faint
        nw, my, mw = sp.nose_w, sp.mouth_y, sp.mouth_w
        for s in (-1, 1):  # nasolabial folds
            x, y = bezier(
                (s * (nw + 0.1), ey + sp.nose_len - 0.04),
                (s * (mw + 0.12), my - 0.12),
                (s * (mw + 0.08), my + 0.06),
            )
            cv.line(x, y, col, 0.026 * d)
            x, y = bezier(
                (s * (sp.eye_x - 0.12), ey + 0.15),
                (s * sp.eye_x, ey + 0.2),
                (s * (sp.eye_x + 0.14), ey + 0.13),
            )
            cv.line(x, y, faint, 0.016 * d)
    if sp.age == "old":
        for s in (-1, 1):  # sagging jowls and under-eye lines
            x, y = bezier(
                (s * (sp.mouth_w + 0.05), sp.mouth_y + 0.12),
                (s * (sp.mouth_w + 0.14), sp.mouth_y + 0.28),
                (s * (sp.mouth_w + 0.3), sp.mouth_y + 0.3),
            )
            cv.line(x, y, dark, 0.022 * d)
            x, y = bezier(
                (s * 0.12, sp.hb * 0.8), (s * 0.2, sp.hb + 0.25), (s * 0.25, sp.hb + 0.45)
            )
            cv.line(x, y, faint, 0.02 * d)  # neck cords
