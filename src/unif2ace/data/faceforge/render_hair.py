"""Hair and facial hair of the FaceForge renderer.

Scalp hair is two layers: the *back* mass (behind the head and neck, its length reaching the
ears, the jaw or the chest) and the *front* cap (crown down to the hairline: straight, receding
or widow's peak, optionally bangs). Texture strokes give the type: straight lines, waves or
curls. Facial hair: full beard, five o'clock stipple, sideburns, mustache.
"""

from __future__ import annotations

import math

import numpy as np

from .render_canvas import Canvas, bezier, ellipse, join, mix, rgba, shade
from .render_spec import Spec

FACE_DZ = 0.3  # = render_head.FACE_DZ: hair lying on the face outline moves with it

VOLUME = {"straight": 0.1, "wavy": 0.15, "curly": 0.24}


def _edge(x: np.ndarray, y: np.ndarray, kind: str, amp: float, phase: float):
    """Displace an outline outwards (from the head centre) by the hair type's texture."""
    if kind == "straight":
        return x, y
    t = np.arange(len(x))
    freq = 0.9 if kind == "wavy" else 2.1
    d = amp * (np.sin(t * freq + phase) if kind == "wavy" else np.abs(np.sin(t * freq + phase)))
    r = np.hypot(x, y) + 1e-9
    return x + d * x / r, y + d * y / r


def hair_back(cv: Canvas, sp: Spec, rng: np.random.Generator) -> None:
    """The hair mass behind the head; length decides how far it falls."""
    eff = sp.eff
    if eff.get("bald") or eff.get("hair_length") is None:
        return
    kind, length = eff["hair_type"], eff["hair_length"]
    vol = VOLUME[kind] * (0.7 if length == "short" else 1.0)
    W = sp.w_top + vol
    end = {"short": 0.05, "medium": sp.hb * 0.95, "long": sp.hb + 1.5}[length]
    flare = {"short": 0.0, "medium": 0.08, "long": 0.28}[length] + (
        0.12 if kind == "curly" else 0.0
    )
    th = np.linspace(math.pi, 0.0, 26)  # top arc from left to right
    ax, ay = W * np.cos(th), -(sp.hb + vol) * np.sin(th) * 1.0
    sy = np.linspace(0.0, end, 12)[1:]
    sx = W + flare * (sy / max(end, 1e-6)) ** 1.5
    x = np.concatenate([ax, sx, [sx[-1] * 0.6, -sx[-1] * 0.6], -sx[::-1]])
    y = np.concatenate([ay, sy, [end + 0.06, end + 0.06], sy[::-1]])
    x, y = _edge(x, y, kind, 0.05 if kind == "wavy" else 0.07, float(rng.uniform(0, 6)))
    col = rgba(sp.hair)
    cv.poly(x, y, col, dz=-0.6)
    if kind == "curly":
        for px, py in zip(x[::2], y[::2], strict=False):
            cx, cy = ellipse(px, py, 0.07, 0.07, n=10)
            cv.poly(cx, cy, col, dz=-0.6)
    if length != "short":
        _strands_down(cv, sp, kind, W, end, rng)


def _strands_down(cv: Canvas, sp: Spec, kind: str, W: float, end: float, rng) -> None:
    dark, light = shade(sp.hair, 0.62, 150), shade(sp.hair, 1.3, 110)
    for s in (-1, 1):
        for i in range(6):
            x0 = s * (W - 0.03 - i * 0.045)
            ys = np.linspace(0.0, end - 0.05, 10)
            if kind == "straight":
                xs = np.full_like(ys, x0) + s * 0.03 * (ys / max(end, 1e-6))
            else:
                amp, f = (0.035, 5.0) if kind == "wavy" else (0.05, 11.0)
                xs = x0 + amp * np.sin(ys * f + i)
            if kind == "curly":
                cx, cy = ellipse(x0, float(rng.uniform(0.1, end)), 0.05, 0.05, n=9, t0=0, t1=4.5)
                cv.line(cx, cy, dark, 0.02, dz=-0.6)
            cv.line(xs, ys, dark if i % 2 == 0 else light, 0.018, dz=-0.6)


def hairline_curve(sp: Spec, n: int = 15) -> tuple[np.ndarray, np.ndarray]:
    """The hairline from the right temple to the left one (straight, receding, widow's peak)."""
    kind = sp.eff.get("hairline") or "straight"
    h0 = -sp.hb * 0.6
    t = np.linspace(1.0, -1.0, n)
    xw = (sp.w_top - 0.06) * t
    base = h0 + 0.35 * np.abs(t) ** 3  # temples come lower than the centre
    if kind == "receding":
        base = base - 0.3 * np.exp(-(((np.abs(t) - 0.62) / 0.2) ** 2)) - 0.05
    elif kind == "widows_peak":
        base = base - 0.08 + 0.16 * np.clip(1 - np.abs(t) / 0.3, 0, 1) ** 1.5
    return xw, base


def hair_front(cv: Canvas, sp: Spec, rng: np.random.Generator) -> None:
    """The cap of hair over the skull down to the hairline, texture strokes, and bangs."""
    eff = sp.eff
    if eff.get("bald") or eff.get("hair_length") is None:
        return
    kind = eff["hair_type"]
    vol = VOLUME[kind] * (0.7 if eff["hair_length"] == "short" else 1.0)
    hx, hy = hairline_curve(sp)
    th = np.linspace(math.pi, 0.0, len(hx))
    ox = (sp.w_top + vol) * np.cos(th) * 1.0
    oy = -(sp.hb + vol) * np.sin(th)
    ox = np.concatenate([[-(sp.w_top + vol * 0.6)], ox, [sp.w_top + vol * 0.6]])
    oy = np.concatenate([[sp.ear_y - 0.2], oy, [sp.ear_y - 0.2]])
    ex, ey = _edge(ox, oy, kind, 0.04 if kind == "wavy" else 0.06, float(rng.uniform(0, 6)))
    col = rgba(sp.hair)
    cv.line(hx, hy + 0.03, (40, 20, 10, 45), 0.07)  # the hair's shadow on the forehead
    cv.poly(*join((ex, ey), (hx, hy)), col, dz=-0.2)  # covers the skull side when turned
    cv.poly(*join((ex, ey), (hx, hy)), col)
    _sheen(cv, sp, (ox[1:-1], oy[1:-1]), (hx[::-1], hy[::-1]))
    _cap_strokes(cv, sp, kind, (ox[1:-1], oy[1:-1]), (hx[::-1], hy[::-1]), rng)
    if eff.get("bangs"):
        _bangs(cv, sp, kind, rng)


def _sheen(cv: Canvas, sp: Spec, outer, inner) -> None:
    """A soft highlight band across the crown (gives the hair cap volume)."""
    (ox, oy), (ix, iy) = outer, inner
    k = slice(3, len(ox) - 3)
    for f0, f1, a in ((0.35, 0.75, 40), (0.45, 0.65, 45)):
        x = np.concatenate([(ix + f0 * (ox - ix))[k], (ix + f1 * (ox - ix))[k][::-1]])
        y = np.concatenate([(iy + f0 * (oy - iy))[k], (iy + f1 * (oy - iy))[k][::-1]])
        cv.poly(x, y, shade(sp.hair, 1.45, a))


def _cap_strokes(cv: Canvas, sp: Spec, kind: str, outer, inner, rng) -> None:
    """Texture on the hair cap: combed strands (straight), waves, or curls."""
    dark, light = shade(sp.hair, 0.7, 110), shade(sp.hair, 1.25, 90)
    (ox, oy), (ix, iy) = outer, inner
    for i in range(1, len(ox) - 1):
        if kind == "curly":
            for f in (0.3, 0.65):
                px, py = ix[i] + f * (ox[i] - ix[i]), iy[i] + f * (oy[i] - iy[i])
                cx, cy = ellipse(
                    px,
                    py,
                    0.045,
                    0.045,
                    n=9,
                    t0=float(rng.uniform(0, 3)),
                    t1=float(rng.uniform(4, 6)),
                )
                cv.line(cx, cy, dark if (i + int(f * 10)) % 2 else light, 0.02)
            continue
        if i % 2 and kind == "straight":
            continue
        wob = 0.06 * math.sin(i * 1.7) if kind == "wavy" else 0.02 * math.sin(i * 2.3)
        f0 = float(rng.uniform(0.05, 0.3))
        sx, sy = ix[i] + f0 * (ox[i] - ix[i]) * 0.8, iy[i] + f0 * (oy[i] - iy[i]) * 0.8
        mx, my = 0.5 * (sx + ix[i]) + wob, 0.5 * (sy + iy[i])
        if kind == "wavy":
            x = np.linspace(sx, ix[i], 8)
            y = np.linspace(sy, iy[i] - 0.02, 8)
            x = x + 0.035 * np.sin(np.linspace(0, 2.5 * math.pi, 8) + i)
        else:
            x, y = bezier((sx, sy), (mx, my), (ix[i], iy[i] - 0.02), n=8)
        cv.line(x, y, dark if i % 4 < 2 else light, 0.016)


def _bangs(cv: Canvas, sp: Spec, kind: str, rng: np.random.Generator) -> None:
    """A fringe from the crown down to just above the brows."""
    bottom = sp.eye_y - sp.brow_gap - 0.1
    w = sp.w_top - 0.02
    n = 9
    bx = np.linspace(w, -w, n)
    by = bottom + 0.06 * (np.abs(bx) / w) ** 2 * 2
    by = by + np.where(np.arange(n) % 2 == 0, 0.0, -0.05)  # strand tips
    top = -sp.hb * 0.9
    x = np.concatenate([[-w - 0.02, -w * 0.6, 0.0, w * 0.6, w + 0.02], bx])
    y = np.concatenate([[-0.35, top, top - 0.05, top, -0.35], by])
    cv.poly(x, y, rgba(sp.hair), dz=0.05)
    dark = shade(sp.hair, 0.6, 160)
    for i in range(n):
        cv.line([bx[i] * 0.8, bx[i]], [top + 0.1, by[i]], dark, 0.016, dz=0.05)
    if kind == "curly":
        for i in range(n):
            cx, cy = ellipse(bx[i], by[i] - 0.02, 0.05, 0.05, n=9)
            cv.poly(cx, cy, rgba(sp.hair), dz=0.05)


def beard_area(sp: Spec, grow: float):
    """Lower-face region (cheeks below the cheekline, chin, jaw) for beards and stubble.

    Returns:
        x_N, y_N, dz_N: outline points and their depth offsets (outline points sit on the face
        outline, render_head.outline_dz; the upper edge lies on the face surface).
    """
    from .render_head import head_outline, outline_dz

    ox, oy = head_outline(sp, grow=grow, n=40)
    top_side = sp.ear_y + 0.15
    k = (oy > top_side) & (ox > 0)
    rx, ry = ox[k], oy[k]
    lx, ly = -rx[::-1], ry[::-1]
    mw, my = sp.mouth_w, sp.mouth_y
    side = sp.half_width(top_side) - 0.12
    tx = [-side, -0.6, -mw * 1.1, -mw * 0.6, 0.0, mw * 0.6, mw * 1.1, 0.6, side]
    ty = [
        top_side + 0.05,
        my - 0.16,
        my - 0.03,
        my + 0.02,
        my + 0.05,
        my + 0.02,
        my - 0.03,
        my - 0.16,
        top_side + 0.05,
    ]
    x = np.concatenate([rx, lx, tx])
    y = np.concatenate([ry, ly, ty])
    dz = np.concatenate([outline_dz(sp, ry), outline_dz(sp, ly), np.zeros(len(tx))])
    return x, y, dz


def facial_hair(cv: Canvas, sp: Spec, rng: np.random.Generator) -> None:
    """Beard (textured mass) or five o'clock shadow (stipple), and sideburns."""
    eff, col = sp.eff, sp.facial_hair
    if eff["beard"]:
        x, y, dz = beard_area(sp, grow=0.07)
        cv.poly(x, y, rgba(col), dz=dz)
        n = 80
        bx = rng.uniform(-0.8, 0.8, n)
        by = rng.uniform(sp.mouth_y + 0.08, sp.hb, n)
        keep = np.abs(bx) < np.array([sp.half_width(v) for v in by]) - 0.04
        for px, py in zip(bx[keep], by[keep], strict=False):
            cv.line(
                [px, px + 0.02], [py, py + 0.05], shade(col, 0.6 if px > 0 else 1.35, 150), 0.016
            )
    elif eff["five_o_clock_shadow"]:
        x, y, dz = beard_area(sp, grow=0.0)
        cv.poly(x, y, mix(sp.skin, (40, 45, 55), 0.5, 70), dz=dz)
        n = 260
        bx = rng.uniform(-0.9, 0.9, n)
        by = rng.uniform(sp.mouth_y - 0.15, sp.hb, n)
        keep = (np.abs(bx) < np.array([sp.half_width(v) for v in by]) - 0.02) & (
            (by > sp.mouth_y + 0.08) | (np.abs(bx) > sp.mouth_w + 0.05)
        )
        cv.dots(bx[keep], by[keep], 0.011 * cv.detail, (35, 30, 30, 150))
    if eff["sideburns"]:
        ys = np.linspace(-0.25, sp.ear_y + 0.28, 8)
        hw = np.array([sp.half_width(v) for v in ys])
        wid = np.linspace(0.12, 0.09, 8)
        for s in (-1, 1):
            # On the side the face turns towards, sit on the face outline; on the other side
            # (where the skull's side shows) stay near the ear.
            dz = FACE_DZ if s * cv.frame.yaw > 0 else -0.1
            x = np.concatenate([s * (hw + 0.005), s * (hw - wid)[::-1]])
            y = np.concatenate([ys, ys[::-1] + 0.02])
            cv.poly(x, y, rgba(col), dz=dz)
            cv.line(s * (hw - wid * 0.5), ys, shade(col, 0.6, 150), 0.02, dz=dz)


def mustache(cv: Canvas, sp: Spec) -> None:
    """A mustache over the upper lip (drawn after the mouth)."""
    if not sp.eff["mustache"]:
        return
    nb, my, mw = sp.eye_y + sp.nose_len, sp.mouth_y - 0.06 * sp.expr.curve, sp.mouth_w
    top = nb + 0.04
    x = [-mw * 1.05, -mw * 0.6, -0.1, 0.0, 0.1, mw * 0.6, mw * 1.05, mw * 0.5, 0.0, -mw * 0.5]
    y = [
        my + 0.03,
        top + 0.01,
        top,
        top + 0.02,
        top,
        top + 0.01,
        my + 0.03,
        my - 0.03,
        my - 0.05,
        my - 0.03,
    ]
    cv.poly(x, y, rgba(sp.facial_hair), dz=0.1)
    for i in range(-4, 5):
        xi = i * mw * 0.2
        cv.line(
            [xi, xi * 1.15], [top + 0.02, my - 0.04], shade(sp.facial_hair, 0.6, 140), 0.014, dz=0.1
        )
