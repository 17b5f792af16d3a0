"""Accessories of the FaceForge renderer: earrings, necklace, hat, eyeglasses / sunglasses and
face mask. Styles and colours come from the image seed; occluders are opaque so hidden
attributes (ontology.OCCLUSION) cannot show through.
"""

from __future__ import annotations

import math

import numpy as np

from .render_canvas import Canvas, bezier, ellipse, hsv, join, rgba, shade
from .render_spec import FRAMES, METAL, Spec


def earrings(cv: Canvas, sp: Spec, lobes, rng: np.random.Generator) -> None:
    """Hoops or drops hanging from both ear lobes (drawn with the ears, behind the face)."""
    if not sp.eff["earrings"]:
        return
    metal = METAL[int(rng.integers(len(METAL)))]
    hoop = bool(rng.integers(2))
    d = cv.detail
    for lx, ly in lobes:
        if hoop:
            x, y = ellipse(lx, ly + 0.12, 0.11, 0.13, n=20)
            cv.line(np.append(x, x[0]), np.append(y, y[0]), (40, 30, 20, 200), 0.06 * d, dz=-0.3)
            cv.line(np.append(x, x[0]), np.append(y, y[0]), rgba(metal), 0.04 * d, dz=-0.3)
        else:
            cv.dots([lx], [ly], 0.04 * d, rgba(metal), dz=-0.3)
            cv.line([lx, lx], [ly, ly + 0.14], (60, 50, 40, 255), 0.02 * d, dz=-0.3)
            cv.dots([lx], [ly + 0.18], 0.08 * d, (40, 30, 20, 220), dz=-0.3)
            cv.dots([lx], [ly + 0.18], 0.062 * d, rgba(metal), dz=-0.3)


def necklace(cv: Canvas, sp: Spec, rng: np.random.Generator) -> None:
    """A beaded chain around the base of the neck with a pendant (body frame)."""
    if not sp.eff["necklace"]:
        return
    metal = METAL[int(rng.integers(len(METAL)))]
    top, nw, d = sp.hb + 0.5, sp.neck_w, cv.detail
    x, y = bezier((-nw * 1.1, top + 0.05), (0.0, top + 0.75), (nw * 1.1, top + 0.05), n=17)
    cv.line(x, y, (40, 30, 20, 200), 0.045 * d)
    cv.dots(x, y, 0.04 * d, rgba(metal))
    cv.dots([0.0], [y[8] + 0.06], 0.085 * d, (40, 30, 20, 230))
    cv.dots([0.0], [y[8] + 0.06], 0.065 * d, rgba(METAL[(METAL.index(metal) + 3) % 5]))


def hat(cv: Canvas, sp: Spec, rng: np.random.Generator) -> None:
    """Beanie, cap or fedora over the crown; it hides the hairline and any bangs."""
    if not sp.eff["hat"]:
        return
    style = int(rng.integers(3))
    col = hsv(float(rng.uniform()), float(rng.uniform(0.2, 0.8)), float(rng.uniform(0.25, 0.85)))
    W, hb = sp.w_top, sp.hb
    t = np.linspace(-1.0, 1.0, 15)
    band_y = -hb * 0.5 + 0.22 * t**2  # lower edge of the hat, lower at the temples
    th = np.linspace(math.pi, 0.0, 24)
    lift = 0.35 if style == 2 else 0.0
    dome = ((W + 0.16) * np.cos(th), -(hb + 0.16 + lift) * np.sin(th) - 0.05)
    edge = ((W + 0.12) * t[::-1] * 1.02, band_y[::-1])
    if style == 2:  # fedora: flat-topped crown
        dome = (dome[0] * 0.9, np.maximum(dome[1], -hb - 0.32))
    cv.poly(*join(edge, dome), rgba(col))
    dark = shade(col, 0.62)
    if style == 0:  # beanie: ribbed fold
        fx, fy = (W + 0.14) * t, band_y - 0.22
        cv.poly(
            *join((fx, fy), ((W + 0.14) * t[::-1], band_y[::-1] + 0.02)), rgba(shade(col, 0.85))
        )
        for i in range(1, 14):
            cv.line([fx[i], fx[i]], [fy[i] + 0.02, band_y[i]], dark, 0.02)
    elif style == 1:  # cap: brim towards the viewer
        bx, by = ellipse(0.0, -hb * 0.5 + 0.02, W * 0.95, 0.2, n=24, t0=0.0, t1=math.pi)
        cv.poly(*join((bx, by), ((W * 0.95) * t, -hb * 0.5 - 0.02 + 0.0 * t)), rgba(dark), dz=0.3)
        cv.line([0.0, 0.0], [-hb - 0.2, -hb * 0.5], dark, 0.02)
    else:  # fedora: wide brim and ribbon
        bx, by = ellipse(0.0, -hb * 0.5 + 0.03, W + 0.55, 0.17, n=30)
        cv.poly(bx, by, rgba(shade(col, 0.8)))
        cv.poly(
            *join(
                ((W + 0.1) * t * 0.93, band_y * 0 - hb * 0.5 - 0.02),
                ((W + 0.1) * t[::-1] * 0.93, 0 * t - hb * 0.5 - 0.2),
            ),
            rgba(dark),
        )


def glasses(cv: Canvas, sp: Spec, rng: np.random.Generator) -> None:
    """Eyeglasses (thin frame, clear lens) or sunglasses (opaque dark lens hiding the eyes)."""
    kind = sp.eff["glasses"]
    if kind == "none":
        return
    sun = kind == "sunglasses"
    frame = FRAMES[int(rng.integers(len(FRAMES)))]
    p = [2.0, 3.5, 6.0][int(rng.integers(3))]  # round / soft rectangle / rectangle
    rx = sp.eye_rx * (1.6 if sun else 1.45)
    ry = 0.24 if sun else sp.eye_rx * 1.05
    lens_rgb = hsv(float(rng.uniform()), 0.5, 0.18) if rng.uniform() < 0.4 else (14, 14, 18)
    for s in (-1, 1):
        cx, cy = s * sp.eye_x, sp.eye_y + (0.01 if sun else 0.02)
        t = np.linspace(0, 2 * math.pi, 32, endpoint=False)
        c, sn = np.cos(t), np.sin(t)
        x = cx + rx * np.sign(c) * np.abs(c) ** (2 / p)
        y = cy + ry * np.sign(sn) * np.abs(sn) ** (2 / p)
        if sun:
            cv.poly(x, y, rgba(lens_rgb))
            gx, gy = bezier(
                (cx - rx * 0.5, cy - ry * 0.1),
                (cx - rx * 0.2, cy - ry * 0.6),
                (cx + rx * 0.2, cy - ry * 0.75),
                n=6,
            )
            cv.line(gx, gy, (255, 255, 255, 120), 0.035)
        else:
            cv.poly(x, y, (235, 245, 255, 45))
            cv.line(
                [cx - rx * 0.5, cx - rx * 0.1],
                [cy + ry * 0.4, cy - ry * 0.5],
                (255, 255, 255, 110),
                0.02,
            )
        w = 0.045 if sun else 0.032
        cv.line(np.append(x, x[0]), np.append(y, y[0]), rgba(frame), w)
        hx = s * sp.half_width(sp.eye_y)
        # Temple arm: to the face outline on the side the face turns to, else towards the ear.
        dz = 0.3 if s * cv.frame.yaw > 0 else -0.1
        cv.line([cx + s * rx, hx], [cy - ry * 0.5, sp.eye_y - 0.02], rgba(frame), w, dz=dz)
    bx, by = bezier(
        (-sp.eye_x + rx, sp.eye_y - 0.04),
        (0.0, sp.eye_y - 0.12),
        (sp.eye_x - rx, sp.eye_y - 0.04),
        n=6,
    )
    cv.line(bx, by, rgba(frame), 0.035, dz=0.1)


def face_mask(cv: Canvas, sp: Spec, rng: np.random.Generator) -> None:
    """A surgical mask from the nose bridge to under the chin, with pleats and ear loops."""
    if not sp.eff["face_mask"]:
        return
    from .render_head import head_outline, outline_dz

    col = [(165, 205, 235), (238, 238, 240), (38, 38, 44), (240, 170, 190)][int(rng.integers(4))]
    ey = sp.eye_y
    ox, oy = head_outline(sp, grow=0.12, n=40)
    top_side = ey + 0.2
    k = (oy > top_side) & (ox > 0)
    rx, ry = ox[k], oy[k]
    ws = sp.half_width(top_side) + 0.04
    tx = [-ws, -0.35, 0.0, 0.35, ws]
    ty = [top_side, ey + 0.13, ey + 0.09, ey + 0.13, top_side]
    x = np.concatenate([tx, rx, -rx[::-1]])
    y = np.concatenate([ty, ry, ry[::-1]])
    dz = np.concatenate([np.zeros(len(tx)), outline_dz(sp, ry), outline_dz(sp, ry[::-1])])
    cv.poly(x, y, rgba(col), dz=dz, outline=shade(col, 0.7), width=0.02)
    dark = shade(col, 0.75, 220)
    for i in range(3):
        yy = sp.eye_y + sp.nose_len + 0.05 + i * 0.12
        cv.line([-ws * 0.85, 0.0, ws * 0.85], [yy, yy + 0.04, yy], dark, 0.02)
    for s in (-1, 1):
        ex = s * (sp.half_width(sp.ear_y) + 0.05)
        cv.line([s * ws, ex], [top_side, sp.ear_y - 0.1], shade(col, 0.9, 255), 0.025, dz=-0.2)
        cv.line(
            [s * (sp.half_width(sp.mouth_y) + 0.1), ex],
            [sp.mouth_y + 0.1, sp.ear_y + 0.1],
            shade(col, 0.9, 255),
            0.025,
            dz=-0.2,
        )
