"""Drawing primitives for the FaceForge renderer: a head-local coordinate frame and a canvas.

Every face feature is described in *head-local* coordinates: ``x`` and ``y`` in units of the
head's half-width ``a`` (pixels), measured from the head centre, ``y`` pointing down. The
:class:`Frame` maps them to canvas pixels through a small 3D head model (an ellipsoid whose depth
``z`` moves features sideways under yaw, so a turned head foreshortens the far eye and shifts the
nose), then rolls everything about the neck for head tilt. Shapes are polygons, so the same
transform applies to all of them; anti-aliasing comes from supersampling (render.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

RGBA = tuple[int, int, int, int]


@dataclass(frozen=True)
class Frame:
    """Head-local -> canvas pixel transform.

    Args:
        cx, cy: head centre on the canvas (pixels).
        a: head half-width (pixels); the unit of head-local coordinates.
        hb: head half-height in units of ``a``.
        yaw: head turn (radians, > 0 turns the face towards the image's right).
        roll: head tilt (radians, > 0 clockwise on screen), about the point ``(0, pivot)``.
        pivot: roll pivot (neck base), head-local ``y``.
    """

    cx: float
    cy: float
    a: float
    hb: float
    yaw: float = 0.0
    roll: float = 0.0
    pivot: float = 1.9

    def __post_init__(self) -> None:
        # Trigonometry once per frame, not once per shape (map() runs ~150 times per image).
        for k, v in (
            ("_cyaw", math.cos(self.yaw)),
            ("_syaw", 0.9 * math.sin(self.yaw)),
            ("_cr", math.cos(self.roll)),
            ("_sr", math.sin(self.roll)),
        ):
            object.__setattr__(self, k, v)

    def map(self, x_N, y_N, dz=0.0) -> np.ndarray:
        """Map head-local points to canvas pixels.

        Args:
            x_N, y_N: head-local coordinates of N points.
            dz: depth offset (scalar or per point) added to the ellipsoid depth (> 0 sticks
                out, e.g. the nose tip; < 0 lies behind the face plane, e.g. ears and the back
                of the hair).

        Returns:
            p_N2: canvas pixel coordinates.
        """
        x = np.asarray(x_N, dtype=np.float64)
        y = np.asarray(y_N, dtype=np.float64)
        yn = y / self.hb
        z = np.sqrt(np.maximum(1.0 - x * x - yn * yn, 0.0)) + dz
        xs = x * self._cyaw + z * self._syaw
        dy = y - self.pivot
        out = np.empty(x.shape + (2,))
        out[..., 0] = self.cx + self.a * (xs * self._cr - dy * self._sr)
        out[..., 1] = self.cy + self.a * (xs * self._sr + dy * self._cr + self.pivot)
        return out


class Canvas:
    """A supersampled RGB image with alpha-blending drawing in head-local coordinates."""

    def __init__(self, img: Image.Image, frame: Frame, detail: float = 1.0):
        self.img = img
        self.frame = frame
        self.detail = detail  # > 1 enlarges tiny details (freckles, mole) at small sizes
        self.draw = ImageDraw.Draw(img, "RGBA")

    def _flat(self, p_N2: np.ndarray) -> list[float]:
        return p_N2.ravel().tolist()

    def poly(
        self, x_N, y_N, fill: RGBA, dz: float = 0.0, outline: RGBA | None = None, width: float = 0.0
    ) -> None:
        """Filled polygon; ``width`` (head units) draws an outline of that thickness."""
        p = self._flat(self.frame.map(x_N, y_N, dz))
        self.draw.polygon(p, fill=fill)
        if outline is not None and width > 0:
            self.draw.line(p + p[:2], fill=outline, width=self.px(width), joint="curve")

    def line(self, x_N, y_N, fill: RGBA, width: float, dz: float = 0.0) -> None:
        """Polyline of thickness ``width`` (head units, at least one canvas pixel)."""
        p = self._flat(self.frame.map(x_N, y_N, dz))
        self.draw.line(p, fill=fill, width=self.px(width), joint="curve")

    def dots(self, x_N, y_N, r: float, fill: RGBA, dz: float = 0.0) -> None:
        """Round dots of radius ``r`` (head units) centred at the points (stipple, freckles)."""
        p = self.frame.map(x_N, y_N, dz)
        rp = max(0.5, r * self.frame.a)
        for px, py in p.tolist():
            self.draw.ellipse((px - rp, py - rp, px + rp, py + rp), fill=fill)

    def px(self, width: float) -> int:
        return max(1, int(round(width * self.frame.a)))


# ---- shape helpers (all return head-local x_N, y_N arrays) -----------------------------------
@lru_cache(maxsize=256)
def _unit_arc(n: int, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(t0, t1, n, endpoint=(t1 - t0) < 2 * math.pi - 1e-9)
    return np.cos(t), np.sin(t)


def ellipse(
    cx: float,
    cy: float,
    rx: float,
    ry: float,
    n: int = 28,
    rot: float = 0.0,
    t0: float = 0.0,
    t1: float = 2 * math.pi,
) -> tuple[np.ndarray, np.ndarray]:
    """Points on an ellipse (or an arc from angle t0 to t1), rotated by ``rot`` radians."""
    c_, s_ = _unit_arc(n, round(t0, 6), round(t1, 6))
    ex, ey = rx * c_, ry * s_
    if rot == 0.0:
        return cx + ex, cy + ey
    c, s = math.cos(rot), math.sin(rot)
    return cx + ex * c - ey * s, cy + ex * s + ey * c


@lru_cache(maxsize=64)
def _bezier_basis(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = np.linspace(0.0, 1.0, n)
    return (1 - t) ** 2, 2 * (1 - t) * t, t**2


def bezier(p0, p1, p2, n: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Quadratic Bézier curve from p0 to p2 with control point p1."""
    b0, b1, b2 = _bezier_basis(n)
    return (b0 * p0[0] + b1 * p1[0] + b2 * p2[0], b0 * p0[1] + b1 * p1[1] + b2 * p2[1])


def join(*parts: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate point lists (to build a closed outline from curve pieces)."""
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def mirror(x_N: np.ndarray, y_N: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left-right mirror image of a shape (for paired features)."""
    return -np.asarray(x_N), np.asarray(y_N)


# ---- colour helpers ------------------------------------------------------------------------
def rgba(rgb, alpha: int = 255) -> RGBA:
    r, g, b = (int(max(0, min(255, round(c)))) for c in rgb[:3])
    return (r, g, b, int(alpha))


def shade(rgb, factor: float, alpha: int = 255) -> RGBA:
    """Darken (< 1) or lighten (> 1, towards white) a colour."""
    if factor <= 1.0:
        return rgba([c * factor for c in rgb[:3]], alpha)
    t = min(1.0, factor - 1.0)
    return rgba([c + (255 - c) * t for c in rgb[:3]], alpha)


def mix(c1, c2, t: float, alpha: int = 255) -> RGBA:
    """Linear blend of two colours: t=0 gives c1, t=1 gives c2."""
    return rgba([a + (b - a) * t for a, b in zip(c1[:3], c2[:3], strict=True)], alpha)


def hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    """HSV (all in [0, 1]) to RGB in [0, 255]."""
    h = (h % 1.0) * 6.0
    i = int(h)
    f = h - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    r, g, b = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i % 6]
    return (r * 255.0, g * 255.0, b * 255.0)


def soft_blob(
    cv: Canvas,
    cx: float,
    cy: float,
    rx: float,
    ry: float,
    rgb,
    alpha: int,
    rings: int = 4,
    dz: float = 0.0,
) -> None:
    """A soft-edged blob (blush, shadow) faked with concentric translucent ellipses."""
    rings *= 2
    c_, s_ = _unit_arc(20, 0.0, round(2 * math.pi, 6))
    k = 1.0 - 0.8 * np.arange(rings)[:, None] / rings  # ring scales, outermost first
    p = cv.frame.map(cx + rx * k * c_, cy + ry * k * s_, dz)  # all rings in one transform
    fill = rgba(rgb, max(1, alpha // rings))
    for ring in p:
        cv.draw.polygon(ring.ravel().tolist(), fill=fill)
