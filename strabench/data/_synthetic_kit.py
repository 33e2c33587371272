"""The drawing kit the synthetic generators share (private): seeded generators, colours, limbs, JPEG.

Every image is drawn from a generator seeded with ``(seed, role, id, index)`` (``_rng``), so a
dataset is a pure function of its seed and parameters.
"""

from __future__ import annotations

import colorsys
import io
import math

import numpy as np
from PIL import Image, ImageDraw

Colour = tuple[int, int, int]
Point = tuple[float, float]


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng([seed, *key])


def _colour(rng: np.random.Generator, *, sat: tuple[float, float] = (0.35, 1.0),
            val: tuple[float, float] = (0.25, 0.95), neutral_p: float = 0.2) -> Colour:
    """A random clothing colour; some are neutral (black/white/grey) as in real crowds."""
    if rng.random() < neutral_p:
        v = int(rng.uniform(20, 235))
        return (v, v, v)
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*sat), rng.uniform(*val))
    return (int(r * 255), int(g * 255), int(b * 255))


def _skin(rng: np.random.Generator) -> Colour:
    t = rng.random()
    light, dark = np.array([236, 200, 172]), np.array([92, 58, 40])
    c = light + t * (dark - light) + rng.normal(0, 6, 3)
    return tuple(int(v) for v in np.clip(c, 0, 255))  # type: ignore[return-value]


_HAIR = ((20, 16, 14), (60, 38, 24), (110, 70, 40), (200, 165, 100), (150, 150, 150), (140, 50, 30))


def _hair(rng: np.random.Generator) -> Colour:
    if rng.random() < 0.08:  # dyed
        return _colour(rng, sat=(0.6, 1.0), val=(0.4, 0.9), neutral_p=0.0)
    base = np.array(_HAIR[rng.integers(len(_HAIR))]) + rng.normal(0, 8, 3)
    return tuple(int(v) for v in np.clip(base, 0, 255))  # type: ignore[return-value]


def _shade(c: Colour, f: float) -> Colour:
    return tuple(int(min(255, max(0, v * f))) for v in c)  # type: ignore[return-value]


def _capsule(draw: ImageDraw.ImageDraw, p: Point, q: Point, width: float, fill: Colour) -> None:
    """A limb segment: a thick line with round ends, so joints look continuous."""
    draw.line([p, q], fill=fill, width=max(1, round(width)))
    r = width / 2
    for x, y in (p, q):
        draw.ellipse([x - r, y - r, x + r, y + r], fill=fill)


def _sub_quad(quad: list[Point], s0: float, s1: float, t0: float, t1: float) -> list[Point]:
    """The part of a (tl, tr, br, bl) quad between s (across) and t (down) fractions."""
    (ax, ay), (bx, by), (cx, cy), (dx, dy) = quad

    def at(s: float, t: float) -> Point:
        top = (ax + s * (bx - ax), ay + s * (by - ay))
        bot = (dx + s * (cx - dx), dy + s * (cy - dy))
        return (top[0] + t * (bot[0] - top[0]), top[1] + t * (bot[1] - top[1]))

    return [at(s0, t0), at(s1, t0), at(s1, t1), at(s0, t1)]


def _direction(angle: float) -> Point:
    """Unit vector for a limb angle measured from straight down, positive towards +x."""
    return (math.sin(angle), math.cos(angle))


def _jpeg(img: Image.Image, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _finish(arr: np.ndarray, rng: np.random.Generator, noise: float) -> Image.Image:
    arr = arr + rng.normal(0.0, noise, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))

