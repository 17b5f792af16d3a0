"""Facial features of the FaceForge renderer: eyes, eyebrows, nose and mouth.

Expression (render_spec.Expr) bends them: brows lift, knit or tilt, lids open, flatten or
close, mouth corners rise or fall, the mouth opens to show teeth. Side ``s = -1`` is the
image's left, ``s = +1`` its right; a wink closes the right eye.
"""

from __future__ import annotations

import math

import numpy as np

from .render_canvas import Canvas, bezier, ellipse, join, mix, rgba, shade, soft_blob
from .render_spec import EYESHADOW, Spec


def eyes(cv: Canvas, sp: Spec, rng: np.random.Generator) -> None:
    """Both eyes with lids, iris colour, makeup and bags (one closed when winking)."""
    shadow = EYESHADOW[int(rng.integers(len(EYESHADOW)))]
    for s in (-1, 1):
        closed = sp.eff["eyes_closed"] or (sp.eff["wink"] and s == 1)
        _eye(cv, sp, s, closed, shadow)


def _eye(cv: Canvas, sp: Spec, s: int, closed: bool, shadow_rgb) -> None:
    e, ex, ey, rx = sp.expr, s * sp.eye_x, sp.eye_y, sp.eye_rx
    inner, outer = (ex - s * rx, ey), (ex + s * rx, ey - sp.eye_tilt)
    up = rx * 0.6 * e.eye_open * (1.0 - 0.5 * e.lid_flat)
    lo = rx * 0.36 * min(e.eye_open, 1.1) * (1.0 - 0.45 * e.squint)
    ir = rx * 0.52
    skin = rgba(sp.skin)
    if sp.eff["bags_under_eyes"]:
        bx, by = join(
            bezier(inner, (ex, ey + 2 * (lo + 0.03)), outer),
            bezier(outer, (ex, ey + 2 * (lo + 0.13)), inner),
        )
        cv.poly(bx, by, mix(sp.skin, (90, 50, 80), 0.45, 150))
        lx, ly = bezier(
            (ex - s * rx * 0.8, ey + lo + 0.02),
            (ex, ey + 2 * (lo + 0.12) - lo),
            (ex + s * rx * 0.9, ey + lo + 0.01),
        )
        cv.line(lx, ly, shade(sp.skin, 0.55, 200), 0.02)
    if closed:
        if sp.eff["makeup"]:
            _eyeshadow(cv, inner, outer, ex, ey, rx * 0.2, shadow_rgb)
        x, y = bezier(inner, (ex, ey + 0.07), outer)
        cv.line(x, y, (45, 28, 24, 255), 0.035)
        for t in (0.55, 0.75, 0.92):
            i = int(t * (len(x) - 1))
            cv.line([x[i], x[i] + s * 0.02], [y[i], y[i] + 0.05], (45, 28, 24, 230), 0.018)
        return
    ux, uy = bezier(inner, (ex + s * rx * 0.1, ey - 2 * up), outer)
    lx, ly = bezier(outer, (ex, ey + 2 * lo), inner)
    cv.poly(*join((ux, uy), (lx, ly)), (246, 243, 240, 255))
    icx, icy = ex, ey + 0.1 * ir
    x, y = ellipse(icx, icy, ir, ir, n=20)
    cv.poly(x, y, rgba(shade(sp.iris, 0.55)))
    if sp.eff["eye_color"] == "hazel":
        x, y = ellipse(icx, icy, ir * 0.85, ir * 0.85, n=20)
        cv.poly(x, y, (80, 140, 50, 255))
    x, y = ellipse(icx, icy, ir * 0.72, ir * 0.72, n=20)
    cv.poly(x, y, rgba(sp.iris))
    x, y = ellipse(icx, icy, ir * 0.36, ir * 0.36, n=14)
    cv.poly(x, y, (12, 10, 10, 255))
    cv.dots([icx - 0.3 * ir], [icy - 0.35 * ir], 0.2 * ir, (255, 255, 255, 235))
    # Lids cover what of the iris lies outside the opening.
    top, bot = max(ir * 1.1 + 0.02, up + 0.005), max(ir * 1.1 + 0.02, lo + 0.005) + 0.1 * ir
    cv.poly(*join((ux, uy), bezier(outer, (ex, ey - 2 * top), inner)), skin)
    cv.poly(*join((lx, ly), bezier(inner, (ex, ey + 2 * bot), outer)), skin)
    if sp.eff["makeup"]:
        _eyeshadow(cv, inner, outer, ex, ey, up, shadow_rgb)
    cx, cy = bezier(
        (ex - s * rx * 0.8, ey - up * 0.5),
        (ex, ey - 2 * (up + 0.06)),
        (ex + s * rx * 0.9, ey - up * 0.5 - sp.eye_tilt),
    )
    cv.line(cx, cy, shade(sp.skin, 0.7, 140), 0.016)
    liner = 0.05 if sp.eff["makeup"] else (0.022 if sp.male else 0.03)
    cv.line(ux, uy, (30, 20, 18, 255), liner)
    if sp.eff["makeup"]:  # winged liner
        cv.line(
            [outer[0], outer[0] + s * 0.07], [outer[1], outer[1] - 0.05], (20, 14, 12, 255), 0.03
        )
    if not sp.male or sp.eff["makeup"]:
        for t in (0.6, 0.78, 0.95):
            i = int(t * (len(ux) - 1))
            cv.line([ux[i], ux[i] + s * 0.035], [uy[i], uy[i] - 0.04], (25, 16, 14, 230), 0.014)
    cv.line(lx, ly, shade(sp.skin, 0.6, 150), 0.014)


def _eyeshadow(cv: Canvas, inner, outer, ex: float, ey: float, up: float, rgb) -> None:
    x, y = join(
        bezier(inner, (ex, ey - 2 * up), outer), bezier(outer, (ex, ey - 2 * (up + 0.13)), inner)
    )
    cv.poly(x, y, rgba(rgb, 200))


def brows(cv: Canvas, sp: Spec) -> None:
    """Eyebrows: shape (straight/arched/angled), bushiness, expression."""
    e, shape = sp.expr, sp.eff["eyebrow_shape"]
    th = sp.brow_th * (1.9 if sp.eff["bushy_eyebrows"] else 1.0)
    arch = {"straight": 0.0, "arched": 0.095, "angled": 0.11}[shape] * (0.8 if sp.male else 1)
    peak = {"straight": 0.5, "arched": 0.5, "angled": 0.7}[shape]
    col = rgba(sp.brow)
    for s in (-1, 1):
        by = sp.eye_y - sp.brow_gap - e.brow_lift - (e.brow_asym if s == 1 else 0.0)
        x0 = s * (sp.eye_x - sp.eye_rx * 0.95 - 0.0 + e.brow_knit * -1.0)
        x0 = s * max(0.07, abs(x0))
        x2 = s * (sp.eye_x + sp.eye_rx * 1.15)
        y0, y2 = by - e.brow_inner + 0.01, by + (0.09 if shape == "angled" else 0.045)
        t = np.linspace(0.0, 1.0, 11)
        x = x0 + (x2 - x0) * t
        base = y0 + (y2 - y0) * t
        if shape == "angled":
            bump = np.where(t < peak, t / peak, (1 - t) / (1 - peak))
        else:
            bump = np.sin(np.pi * np.clip(t / (2 * peak), 0, 1)) * (t <= 2 * peak) + (
                np.cos(np.pi / 2 * (t - 2 * peak) / max(1e-6, 1 - 2 * peak)) * (t > 2 * peak)
            )
        y = base - arch * bump
        w = th * (1.0 - 0.55 * t)
        nx, ny = _normals(x, y)
        px = np.concatenate([x + nx * w / 2, (x - nx * w / 2)[::-1]])
        py = np.concatenate([y + ny * w / 2, (y - ny * w / 2)[::-1]])
        cv.poly(px, py, col, dz=0.05)
        if sp.eff["bushy_eyebrows"]:
            for i in range(1, 10, 2):
                cv.line(
                    [x[i] - s * 0.02, x[i] + s * 0.02],
                    [y[i] + w[i] * 0.55, y[i] - w[i] * 0.7],
                    col,
                    0.018,
                    dz=0.05,
                )


def _normals(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    dx, dy = np.gradient(x), np.gradient(y)
    n = np.hypot(dx, dy) + 1e-9
    return -dy / n, dx / n


def nose(cv: Canvas, sp: Spec) -> None:
    """Nose: bridge shadow, tip (pointy or rounded), wings and nostrils; size from labels."""
    ey, nw, nb, side = sp.eye_y, sp.nose_w, sp.eye_y + sp.nose_len, sp.shadow_side
    dark = shade(sp.skin, 0.6, 200)
    sx = [side * 0.05, side * nw * 0.8, side * nw * 0.5, side * 0.02]
    sy = [ey + 0.04, nb - 0.1, nb - 0.03, nb - 0.1]
    cv.poly(sx, sy, shade(sp.skin, 0.78, 110), dz=0.15)
    bx, by = bezier((side * 0.06, ey + 0.02), (side * 0.1, nb - 0.25), (side * nw * 0.7, nb - 0.1))
    cv.line(bx, by, shade(sp.skin, 0.7, 120), 0.02, dz=0.15)
    if sp.eff["pointy_nose"]:  # a sharp tip: bright bridge ridge ending in a dark V below
        cv.poly(
            [-0.03, 0.0, 0.03], [ey + 0.08, nb - 0.02, ey + 0.08], shade(sp.skin, 1.4, 200), dz=0.3
        )
        cv.poly(
            [-nw * 0.55, 0.0, nw * 0.55, 0.0],
            [nb - 0.05, nb + 0.09, nb - 0.05, nb + 0.01],
            shade(sp.skin, 0.5, 235),
            dz=0.3,
        )
        cv.line(
            [-nw * 0.4, 0.0, nw * 0.4],
            [nb - 0.12, nb + 0.02, nb - 0.12],
            shade(sp.skin, 0.62, 200),
            0.02,
            dz=0.3,
        )
    else:  # a rounded, bulbous tip
        soft_blob(
            cv, 0.0, nb - 0.06, nw * 0.6, nw * 0.48, shade(sp.skin, 1.3), 160, rings=4, dz=0.3
        )
        tx, ty = ellipse(0.0, nb - 0.06, nw * 0.55, nw * 0.45, n=12, t0=0.3, t1=math.pi - 0.3)
        cv.line(tx, ty, shade(sp.skin, 0.7, 170), 0.018, dz=0.3)
    for s in (-1, 1):
        wx, wy = bezier(
            (s * nw * 0.55, nb - 0.12), (s * nw * 1.25, nb - 0.02), (s * nw * 0.5, nb + 0.01)
        )
        cv.line(wx, wy, dark, 0.024, dz=0.2)
        x, y = ellipse(s * nw * 0.42, nb - 0.005, nw * 0.28, nw * 0.14, n=12, rot=-s * 0.3)
        cv.poly(x, y, (60, 30, 26, 230), dz=0.22)
    x, y = bezier((-nw * 0.3, nb + 0.01), (0.0, nb + 0.04), (nw * 0.3, nb + 0.01))
    cv.line(x, y, shade(sp.skin, 0.75, 150), 0.016, dz=0.3)


def _par(yl: float, ym: float, yr: float, x: np.ndarray, w: float) -> np.ndarray:
    """Parabola through (-w, yl), (0, ym), (w, yr)."""
    return ym + (yr - yl) / (2 * w) * x + ((yl + yr) / 2 - ym) * (x / w) ** 2


def mouth(cv: Canvas, sp: Spec, lip_rgb) -> None:
    """Lips (thin/medium/full, lipstick), expression curve, opening with teeth."""
    e, my = sp.expr, sp.mouth_y
    mw = sp.mouth_w * e.stretch * (1.0 + 0.08 * min(e.curve, 1.2) if e.curve > 0 else 1.0)
    yl = my - 0.085 * e.curve + 0.01 * e.smirk
    yr = my - 0.085 * e.curve - 0.075 * e.smirk
    ym = my + 0.035 * e.curve
    h = 0.15 * e.mouth_open
    tu, tl = 0.048 * sp.lip_k * e.lip_press, 0.064 * sp.lip_k * e.lip_press
    x = np.linspace(-mw, mw, 15)
    snarl = 0.045 * e.snarl * np.clip(x / mw + 0.3, 0, 1)
    up_in = _par(yl, ym - 0.25 * h, yr, x, mw) - snarl * (1 if h > 0 else 0.4)
    lo_in = _par(yl, ym + h, yr, x, mw)
    bow = (1 - (x / mw) ** 2) ** 0.6 * (1 - 0.3 * np.exp(-((x / (0.13 * mw)) ** 2)))
    up_out = up_in - tu * bow - snarl * 0.5
    lo_out = lo_in + tl * (1 - (x / mw) ** 2) ** 0.5
    if h > 0 or e.snarl > 0:
        cv.poly(
            np.concatenate([x, x[::-1]]),
            np.concatenate([up_in, lo_in[::-1] + 0.004]),
            (70, 18, 24, 255),
        )
        if e.teeth or e.mouth_open > 0.9 or e.snarl > 0:
            k = np.abs(x) < 0.8 * mw
            tx, ty = x[k], up_in[k]
            bot = np.minimum(ty + 0.05, lo_in[k])
            cv.poly(
                np.concatenate([tx, tx[::-1]]),
                np.concatenate([ty - 0.01, bot[::-1]]),
                (246, 244, 236, 255),
            )
            if e.mouth_open > 0.9:
                cv.poly(
                    np.concatenate([tx, tx[::-1]]),
                    np.concatenate([lo_in[k] - 0.035, lo_in[k][::-1] + 0.01]),
                    (236, 234, 226, 255),
                )
                for xi in np.linspace(-0.5 * mw, 0.5 * mw, 5):
                    cv.line(
                        [xi, xi], [ym - 0.2 * h, ym - 0.2 * h + 0.045], (190, 186, 178, 200), 0.01
                    )
    cv.poly(np.concatenate([x, x[::-1]]), np.concatenate([up_out, up_in[::-1]]), rgba(lip_rgb))
    cv.poly(
        np.concatenate([x, x[::-1]]),
        np.concatenate([lo_in, lo_out[::-1]]),
        rgba(shade(lip_rgb, 1.08)),
    )
    line = shade(lip_rgb, 0.45, 230)
    cv.line(x, up_in, line, 0.02 if h == 0 else 0.012)
    cv.line(x[2:-2], up_out[2:-2], shade(lip_rgb, 0.8, 120), 0.012)
    soft_blob(
        cv,
        0.1 * mw,
        float(np.max(lo_out)) - tl * 0.45,
        mw * 0.25,
        tl * 0.22,
        (255, 255, 255),
        90 if sp.eff["lipstick"] else 40,
        rings=2,
    )
    if e.curve > 0.5:  # smile creases outside the corners
        for s, yc in ((-1, yl), (1, yr)):
            cx, cy = bezier(
                (s * (mw + 0.02), yc - 0.06), (s * (mw + 0.07), yc), (s * (mw + 0.03), yc + 0.07)
            )
            cv.line(cx, cy, shade(sp.skin, 0.68, 150), 0.018)
    if e.curve < -0.3:  # downturned corners
        for s, yc in ((-1, yl), (1, yr)):
            cv.line([s * mw, s * (mw + 0.04)], [yc, yc + 0.06], shade(sp.skin, 0.65, 150), 0.016)
