"""Procedural stand-ins for Market-1501, LFW/CASIA-style faces and FER2013.

Why synthetic data at all: strabench must run end to end on a laptop with no downloads, yet
exercise the *real* data path. So every generator here writes the real on-disk format
(Market-1501 folders and file names, ``train/<id>/`` + LFW ``pairs.txt``, FER2013 csv) and the
real loaders read it back.

Why the images look the way they do: attention blocks are supposed to help by finding the
discriminative *parts* of an object that moves and deforms. So identity lives in part-level
cues (shirt/trouser/hair colours, a stripe or logo, a backpack, body proportions; face
geometry and colours; mouth/brow/eye shape for expressions) while nuisance is real: limbs
swing, figures shift and scale, six cameras each have their own colour cast, blur, noise and
background texture, boxes occlude, faces rotate and are lit from the side.

Every image is drawn from a generator seeded with ``(seed, role, id, index)``, so a dataset
is a pure function of its seed and sizes; JPEG encoding with the same Pillow build is
deterministic, so files are byte-identical run to run.

:func:`ensure_dataset` adds a cache keyed by (name, generator version, seed, sizes) with an
atomic install: generate into a temp folder, write ``manifest.json`` last, ``os.replace``.
"""

from __future__ import annotations

import colorsys
import csv
import dataclasses
import hashlib
import io
import json
import math
import operator
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from strabench.cache import cache_root  # re-exported: strabench.data.synthetic.cache_root
from strabench.data.fer2013 import CLASS_NAMES as EXPRESSION_NAMES
from strabench.data.fer2013 import SIDE as FER_SIZE  # fixed by the format: 2304 pixels per row
from strabench.errors import ConfigError, DataError, WriteError
from strabench.io import write_error

MANIFEST_NAME = "manifest.json"
#: A generation folder untouched this long has no live writer (see ``remove_stale_generations``).
STALE_GENERATION_AGE_S = 60.0
NUM_CAMERAS = 6  # Market-1501 has six cameras, named c1..c6

Colour = tuple[int, int, int]
Point = tuple[float, float]


# ----------------------------------------------------------------------------------- sizes
def _check_ints(obj: Any, minimums: Mapping[str, int]) -> None:
    """Sizes come from TOML or the CLI; reject floats, bools and values below a floor."""
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name)
        if isinstance(value, bool):
            raise ConfigError(f"dataset size {field.name}={value!r} must be an integer")
        try:
            value = operator.index(value)
        except TypeError:
            raise ConfigError(f"dataset size {field.name}={value!r} must be an integer") from None
        object.__setattr__(obj, field.name, value)
        floor = minimums.get(field.name, 0)
        if value < floor:
            raise ConfigError(f"dataset size {field.name}={value} must be >= {floor}")


@dataclass(frozen=True)
class ReIDSizes:
    """Sizes of ``synthetic_reid``; defaults suit the quick CPU profile (~1.2k images)."""

    num_train_ids: int = 60
    train_images_per_id: int = 12
    num_test_ids: int = 40
    query_cams_per_id: int = 2  # one query per (test id, camera) for this many cameras
    gallery_images_per_id: int = 8  # includes one same-camera image per query camera
    num_distractors: int = 40  # pid 0000, gallery only
    num_junk: int = 15  # pid -1, dropped by the loader
    height: int = 128
    width: int = 64

    def __post_init__(self) -> None:
        _check_ints(
            self,
            {"num_train_ids": 1, "train_images_per_id": 1, "num_test_ids": 1,
             "query_cams_per_id": 1, "gallery_images_per_id": 2, "height": 32, "width": 16},
        )
        if self.query_cams_per_id > NUM_CAMERAS - 1:
            raise ConfigError(
                f"dataset size query_cams_per_id={self.query_cams_per_id} must be <= "
                f"{NUM_CAMERAS - 1} (a query needs a match from another camera)"
            )
        if self.gallery_images_per_id < self.query_cams_per_id + 1:
            raise ConfigError(
                f"dataset size gallery_images_per_id={self.gallery_images_per_id} must be >= "
                f"query_cams_per_id + 1 = {self.query_cams_per_id + 1}"
            )
        if self.num_train_ids + self.num_test_ids > 1501:
            raise ConfigError("dataset sizes num_train_ids + num_test_ids must be <= 1501 (Market-1501 pids)")

    def footprint(self) -> tuple[int, int, int]:
        """(images, pixels per image, channels): what generating and reading the set costs."""
        test = self.num_test_ids * (self.query_cams_per_id + self.gallery_images_per_id)
        images = self.num_train_ids * self.train_images_per_id + test + self.num_distractors + self.num_junk
        return images, self.height * self.width, 3


@dataclass(frozen=True)
class FaceSizes:
    """Sizes of ``synthetic_faces``; verification pairs follow LFW: person-disjoint folds."""

    num_train_ids: int = 80
    images_per_train_id: int = 10
    num_test_ids: int = 40
    images_per_test_id: int = 4
    num_folds: int = 10  # >= 2: each fold's threshold is chosen on the other folds
    pairs_per_fold: int = 10  # matched pairs per fold; as many mismatched again
    size: int = 112

    def __post_init__(self) -> None:
        _check_ints(
            self,
            {"num_train_ids": 2, "images_per_train_id": 1, "num_test_ids": 2,
             "images_per_test_id": 2, "num_folds": 2, "pairs_per_fold": 1, "size": 32},
        )
        if self.num_test_ids < 2 * self.num_folds:
            raise ConfigError(
                f"dataset size num_test_ids={self.num_test_ids} must be >= 2 * num_folds = "
                f"{2 * self.num_folds} (each fold needs two people for a mismatched pair)"
            )
        smallest_fold = self.num_test_ids // self.num_folds
        n = self.images_per_test_id
        matched = smallest_fold * n * (n - 1) // 2
        mismatched = smallest_fold * (smallest_fold - 1) // 2 * n * n
        if min(matched, mismatched) < self.pairs_per_fold:
            raise ConfigError(
                f"dataset size pairs_per_fold={self.pairs_per_fold} is more than a fold of "
                f"{smallest_fold} people x {n} images can give ({min(matched, mismatched)})"
            )

    def footprint(self) -> tuple[int, int, int]:
        """(images, pixels per image, channels): what generating and reading the set costs."""
        images = self.num_train_ids * self.images_per_train_id + self.num_test_ids * self.images_per_test_id
        return images, self.size * self.size, 3


@dataclass(frozen=True)
class ExpressionSizes:
    """Sizes of ``synthetic_expressions`` (rows per FER2013 ``Usage``); classes are balanced."""

    num_train: int = 1400
    num_public_test: int = 300
    num_private_test: int = 300

    def __post_init__(self) -> None:
        _check_ints(self, {"num_train": 7, "num_public_test": 7, "num_private_test": 7})

    def footprint(self) -> tuple[int, int, int]:
        """(images, pixels per image, channels): what generating and reading the set costs."""
        return self.num_train + self.num_public_test + self.num_private_test, FER_SIZE * FER_SIZE, 1


#: The most decoded pixel bytes (images x H x W x channels, uint8) one synthetic dataset may
#: hold: generating more would take hours and more memory or disk than a benchmark box has.
MAX_SYNTHETIC_BYTES = 16 * 2**30


def _resolve_sizes(cls: type, name: str, sizes: Mapping[str, Any]) -> Any:
    """The sizes dataclass, refused (ConfigError) beyond what a machine could generate and read:
    one image over PIL's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``, which every later
    read would refuse) or more than ``MAX_SYNTHETIC_BYTES`` of decoded pixels in all."""
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(sizes) - set(valid))
    if unknown:
        raise ConfigError(f"unknown size {unknown[0]!r} for dataset {name}; valid: {', '.join(valid)}")
    resolved = cls(**sizes)
    images, pixels, channels = resolved.footprint()
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and pixels > limit:
        raise ConfigError(f"dataset {name}: one image would have {pixels:.3g} pixels, more than PIL reads ({limit})")
    total = images * pixels * channels
    if total > MAX_SYNTHETIC_BYTES:
        raise ConfigError(
            f"dataset {name}: {images:.3g} images of {pixels:.3g} pixels would be {total / 2**30:.3g} GiB "
            f"of pixels, more than the {MAX_SYNTHETIC_BYTES // 2**30} GiB a synthetic set may hold"
        )
    return resolved


# --------------------------------------------------------------------------- drawing kit
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


# --------------------------------------------------------------------------------- ReID
@dataclass(frozen=True)
class _Person:
    """What makes a synthetic pedestrian *this* pedestrian, whatever the pose or camera."""

    shirt: Colour
    accent: Colour  # stripes / logo / jacket panels
    trousers: Colour
    shoes: Colour
    hair: Colour
    skin: Colour
    bag: Colour | None
    pattern: int  # 0 plain, 1 stripes, 2 centre band, 3 logo, 4 two-tone, 5 open jacket
    stripes: int
    long_sleeves: bool
    shorts: bool
    long_hair: bool
    height: float
    build: float
    torso_len: float
    head: float


def _random_person(rng: np.random.Generator) -> _Person:
    return _Person(
        shirt=_colour(rng), accent=_colour(rng), trousers=_colour(rng, sat=(0.2, 0.9), val=(0.15, 0.8)),
        shoes=_colour(rng, val=(0.1, 0.9), neutral_p=0.5), hair=_hair(rng), skin=_skin(rng),
        bag=_colour(rng) if rng.random() < 0.35 else None,
        pattern=int(rng.integers(6)), stripes=int(rng.integers(3, 6)),
        long_sleeves=bool(rng.random() < 0.5), shorts=bool(rng.random() < 0.25),
        long_hair=bool(rng.random() < 0.3), height=float(rng.uniform(0.9, 1.05)),
        build=float(rng.uniform(0.85, 1.2)), torso_len=float(rng.uniform(0.9, 1.12)),
        head=float(rng.uniform(0.9, 1.12)),
    )


def _draw_person(draw: ImageDraw.ImageDraw, p: _Person, rng: np.random.Generator,
                 cx: float, top: float, h: float) -> None:
    """Draw an articulated figure; the pose (limb angles, lean, facing) is fresh per image."""
    head_r = 0.064 * h * p.head
    sh_y = top + 1.95 * head_r + 0.02 * h
    torso_len = 0.29 * h * p.torso_len
    hip_y = sh_y + torso_len
    tw, hw = 0.25 * h * p.build, 0.2 * h * p.build
    sx = cx + rng.normal(0.0, 0.05) * torso_len  # lean: shoulders move relative to hips
    quad = [(sx - tw / 2, sh_y), (sx + tw / 2, sh_y), (cx + hw / 2, hip_y), (cx - hw / 2, hip_y)]
    seg = max(1.0, (top + 0.98 * h - hip_y) / 2)
    leg_w, arm_w, arm_seg = 0.09 * h * p.build, 0.062 * h * p.build, 0.185 * h
    facing_front = rng.random() < 0.6
    phase, amp = rng.uniform(0, 2 * math.pi), rng.uniform(0.05, 0.55)
    swing, walk = math.sin(phase), (1 if rng.random() < 0.5 else -1)

    if p.long_hair:
        hx = sx
        draw.rounded_rectangle([hx - 1.15 * head_r, top + head_r, hx + 1.15 * head_r, sh_y + 0.07 * h],
                               radius=head_r * 0.5, fill=p.hair)
    if p.bag is not None and facing_front:  # backpack peeks out behind the shoulders
        draw.rectangle([sx - 0.6 * tw, sh_y + 0.03 * h, sx + 0.6 * tw, sh_y + 0.6 * torso_len], fill=p.bag)

    for side, angle in ((-1, -0.08 + amp * swing), (1, 0.08 - amp * swing)):
        hip = (cx + side * hw * 0.27, hip_y)
        knee = (hip[0] + seg * _direction(angle)[0], hip[1] + seg * _direction(angle)[1])
        shin_angle = angle - walk * rng.uniform(0.0, 0.55)
        foot = (knee[0] + seg * _direction(shin_angle)[0], knee[1] + seg * _direction(shin_angle)[1])
        _capsule(draw, hip, knee, leg_w, p.trousers)
        _capsule(draw, knee, foot, leg_w * 0.9, p.skin if p.shorts else p.trousers)
        fx = foot[0] + walk * leg_w * 0.3
        draw.ellipse([fx - leg_w * 0.75, foot[1] - leg_w * 0.35, fx + leg_w * 0.75, foot[1] + leg_w * 0.4],
                     fill=p.shoes)

    draw.polygon(quad, fill=p.shirt)
    n = p.stripes
    bands = {
        1: [(0.0, 1.0, (k + 0.25) / n, (k + 0.7) / n) for k in range(n)],
        2: [(0.38, 0.62, 0.0, 1.0)],
        3: [(0.3, 0.7, 0.15, 0.5)],
        4: [(0.0, 1.0, 0.0, 0.45)],
        5: [(0.0, 0.28, 0.0, 1.0), (0.72, 1.0, 0.0, 1.0)],
    }.get(p.pattern, [])
    for band in bands:
        draw.polygon(_sub_quad(quad, *band), fill=p.accent)
    if p.bag is not None:
        if facing_front:  # straps
            for s in (0.25, 0.75):
                draw.polygon(_sub_quad(quad, s - 0.06, s + 0.06, 0.0, 0.7), fill=p.bag)
        else:
            draw.polygon(_sub_quad(quad, 0.12, 0.88, 0.06, 0.75), fill=p.bag)

    for side, base in ((-1, -0.12), (1, 0.12)):
        if rng.random() < 0.1:  # waving / phoning: one arm up
            angle = side * rng.uniform(1.9, 2.8)
        else:
            angle = base + side * rng.uniform(0.0, 0.25) - side * amp * swing * 1.1
        shoulder = (sx + side * (tw / 2 - arm_w * 0.4), sh_y + arm_w * 0.6)
        elbow = (shoulder[0] + arm_seg * _direction(angle)[0], shoulder[1] + arm_seg * _direction(angle)[1])
        fore = angle + side * rng.uniform(-0.2, 0.9)
        hand = (elbow[0] + arm_seg * _direction(fore)[0], elbow[1] + arm_seg * _direction(fore)[1])
        _capsule(draw, shoulder, elbow, arm_w, p.shirt)
        _capsule(draw, elbow, hand, arm_w * 0.9, p.shirt if p.long_sleeves else p.skin)
        r = arm_w * 0.55
        draw.ellipse([hand[0] - r, hand[1] - r, hand[0] + r, hand[1] + r], fill=p.skin)

    hx, hy = sx + rng.normal(0, 0.1) * head_r, top + head_r
    draw.rectangle([hx - 0.35 * head_r, hy + 0.6 * head_r, hx + 0.35 * head_r, sh_y + 1], fill=p.skin)
    box = [hx - head_r * 0.9, hy - head_r, hx + head_r * 0.9, hy + head_r]
    if facing_front:
        draw.ellipse(box, fill=p.skin)
        draw.chord([hx - head_r * 0.95, hy - head_r * 1.1, hx + head_r * 0.95, hy + head_r * 0.3],
                   180, 360, fill=p.hair)
        e = max(0.6, 0.12 * head_r)
        for s in (-1, 1):
            ex, ey = hx + s * 0.38 * head_r, hy + 0.05 * head_r
            draw.ellipse([ex - e, ey - e, ex + e, ey + e], fill=(25, 20, 20))
    else:
        draw.ellipse(box, fill=p.hair)


def _tex_floor(yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    horizon = yy.shape[0] * rng.uniform(0.35, 0.6)
    return np.clip((yy - horizon) / 6.0, 0, 1) * 0.8 + 0.2 * yy / yy.shape[0]


def _tex_bricks(yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    bh, bw = int(rng.integers(6, 11)), int(rng.integers(12, 22))
    row = yy // bh
    return (((yy % bh) < 2) | (((xx + (row % 2) * bw // 2) % bw) < 2)).astype(np.float32)


def _tex_fence(yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    period = int(rng.integers(6, 14))
    return ((xx % period) < period // 3).astype(np.float32)


def _tex_grass(yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = yy.shape
    coarse = rng.random((max(2, h // 8), max(2, w // 8)))
    smooth = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC))
    return smooth.astype(np.float32) / 255.0


def _tex_tiles(yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    s = int(rng.integers(8, 16))
    return (((yy // s) + (xx // s)) % 2).astype(np.float32)


def _tex_diagonal(yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    p = int(rng.integers(8, 16))
    return (((xx + yy) // p) % 2).astype(np.float32) * 0.7 + 0.3 * yy / yy.shape[0]


_TEXTURES = (_tex_floor, _tex_bricks, _tex_fence, _tex_grass, _tex_tiles, _tex_diagonal)


@dataclass(frozen=True)
class _Camera:
    """Per-camera nuisance: the cross-camera gap that makes ReID hard."""

    texture: np.ndarray  # (2H, 2W, 3) float32; each image takes a random window
    gain: np.ndarray  # per-channel colour cast
    offset: np.ndarray
    blur: float
    noise: float


def _make_cameras(seed: int, height: int, width: int) -> list[_Camera]:
    cams = []
    for cam in range(NUM_CAMERAS):
        rng = _rng(seed, 7, cam)
        yy, xx = np.mgrid[0 : 2 * height, 0 : 2 * width]
        t = _TEXTURES[cam % len(_TEXTURES)](yy, xx, rng)[..., None]
        c1, c2 = rng.uniform(40, 215, 3), rng.uniform(40, 215, 3)
        texture = (c1 * (1 - t) + c2 * t).astype(np.float32)
        cams.append(_Camera(texture=texture, gain=rng.uniform(0.78, 1.22, 3), offset=rng.uniform(-14, 14, 3),
                            blur=float(rng.uniform(0.0, 1.1)), noise=float(rng.uniform(2.0, 7.0))))
    return cams


def _reid_image(rng: np.random.Generator, cam: _Camera, height: int, width: int,
                person: _Person | None, *, junk: bool = False) -> bytes:
    """Background window + clutter + figure + maybe an occluder, then the camera's look."""
    oy, ox = int(rng.integers(0, height + 1)), int(rng.integers(0, width + 1))
    bg = cam.texture[oy : oy + height, ox : ox + width] * rng.uniform(0.85, 1.15)
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(0, 3))):  # background clutter
        x0, y0 = rng.uniform(-0.2, 1.0) * width, rng.uniform(-0.2, 1.0) * height
        x1, y1 = x0 + rng.uniform(0.1, 0.5) * width, y0 + rng.uniform(0.05, 0.3) * height
        draw.rectangle([x0, y0, x1, y1], fill=_colour(rng, sat=(0.0, 0.5)))
    if person is not None:
        if junk:  # a bad detection: a tiny figure or a crop that misses most of the body
            big = rng.random() < 0.5
            h = height * (rng.uniform(1.8, 2.6) if big else rng.uniform(0.25, 0.4))
            top = rng.uniform(-h * 0.7, -h * 0.3) if big else rng.uniform(0, height - h)
            cx = rng.uniform(0.0, 1.0) * width
        else:
            h = min(0.97, rng.uniform(0.76, 0.92) * person.height) * height
            top = (height - h) / 2 + rng.uniform(-0.03, 0.03) * height
            cx = width / 2 + rng.uniform(-0.1, 0.1) * width
        _draw_person(draw, person, rng, cx, top, h)
    if not junk and rng.random() < 0.3:  # occluder: a car/bench at the bottom or a pole/passer-by
        c = _colour(rng, sat=(0.0, 0.7))
        if rng.random() < 0.5:
            draw.rectangle([rng.uniform(-0.5, 0.3) * width, rng.uniform(0.68, 0.85) * height,
                            rng.uniform(0.7, 1.5) * width, height], fill=c)
        else:
            x0 = rng.uniform(-0.1, 0.8) * width
            draw.rectangle([x0, rng.uniform(-0.1, 0.3) * height, x0 + rng.uniform(0.15, 0.35) * width, height], fill=c)
    if cam.blur > 0.05:
        img = img.filter(ImageFilter.GaussianBlur(cam.blur * rng.uniform(0.8, 1.2)))
    arr = np.asarray(img, dtype=np.float32) * cam.gain * rng.uniform(0.88, 1.12) + cam.offset
    return _jpeg(_finish(arr, rng, cam.noise))


def _write_reid(root: Path, seed: int, sizes: ReIDSizes) -> None:
    """Market-1501 layout; see :func:`generate_synthetic_reid`."""
    H, W = sizes.height, sizes.width
    cams = _make_cameras(seed, H, W)
    layout_rng = _rng(seed, 0)
    pids = layout_rng.choice(np.arange(1, 1502), sizes.num_train_ids + sizes.num_test_ids, replace=False)
    train_pids = sorted(int(p) for p in pids[: sizes.num_train_ids])
    test_pids = sorted(int(p) for p in pids[sizes.num_train_ids :])
    frames = [int(v) for v in layout_rng.integers(1, 5000, NUM_CAMERAS)]
    folders = {k: root / k for k in ("bounding_box_train", "query", "bounding_box_test")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)

    def write(folder: str, pid: int, cam: int, person: _Person | None, rng: np.random.Generator,
              junk: bool = False) -> None:
        frames[cam] += int(layout_rng.integers(1, 120))  # unique frame number per camera
        seq = 1 + (frames[cam] // 20000) % 6
        name = f"{pid:04d}" if pid >= 0 else "-1"
        fname = f"{name}_c{cam + 1}s{seq}_{frames[cam]:06d}_{int(layout_rng.integers(0, 4)):02d}.jpg"
        (folders[folder] / fname).write_bytes(_reid_image(rng, cams[cam], H, W, person, junk=junk))

    for pid in train_pids:
        person = _random_person(_rng(seed, 1, pid))
        pcams = layout_rng.choice(NUM_CAMERAS, int(layout_rng.integers(2, 5)), replace=False)
        for k in range(sizes.train_images_per_id):
            write("bounding_box_train", pid, int(pcams[k % len(pcams)]), person, _rng(seed, 2, pid, k))

    q = sizes.query_cams_per_id
    for pid in test_pids:
        person = _random_person(_rng(seed, 1, pid))
        n_cams = min(NUM_CAMERAS, q + int(layout_rng.integers(1, 3)))
        pcams = [int(c) for c in layout_rng.choice(NUM_CAMERAS, n_cams, replace=False)]
        gallery_cams = list(pcams[:q])  # one same-camera gallery image per query camera
        others = pcams[q:]
        gallery_cams += [others[k % len(others)] for k in range(sizes.gallery_images_per_id - q)]
        for k, cam in enumerate(pcams[:q]):
            write("query", pid, cam, person, _rng(seed, 3, pid, k))
        for k, cam in enumerate(gallery_cams):
            write("bounding_box_test", pid, cam, person, _rng(seed, 4, pid, k))

    for k in range(sizes.num_distractors):  # pid 0: background and people outside the test set
        rng = _rng(seed, 5, k)
        person = _random_person(rng) if rng.random() < 0.5 else None
        write("bounding_box_test", 0, int(layout_rng.integers(NUM_CAMERAS)), person, rng)
    for k in range(sizes.num_junk):  # pid -1: bad detections
        rng = _rng(seed, 6, k)
        write("bounding_box_test", -1, int(layout_rng.integers(NUM_CAMERAS)), _random_person(rng), rng, junk=True)


# -------------------------------------------------------------------------------- faces
@dataclass(frozen=True)
class _FaceIdentity:
    """Face geometry and colours: what survives pose, expression and lighting."""

    skin: Colour
    hair: Colour
    iris: Colour
    lips: Colour
    face_w: float
    face_h: float
    eye_sep: float
    eye_y: float
    eye_w: float
    brow_gap: float
    brow_thick: float
    nose_len: float
    nose_w: float
    mouth_y: float
    mouth_w: float
    hairline: float
    hair_style: int  # 0 short, 1 long, 2 bald, 3 fringe
    beard: int  # 0 none, 1 moustache, 2 beard
    glasses: Colour | None


def _random_face(rng: np.random.Generator) -> _FaceIdentity:
    skin = _skin(rng)
    lips = _shade((int(skin[0] * 0.9 + 25), int(skin[1] * 0.6), int(skin[2] * 0.6)), rng.uniform(0.8, 1.05))
    return _FaceIdentity(
        skin=skin, hair=_hair(rng), iris=_colour(rng, sat=(0.3, 0.9), val=(0.2, 0.7), neutral_p=0.0), lips=lips,
        face_w=float(rng.uniform(0.24, 0.31)), face_h=float(rng.uniform(0.31, 0.38)),
        eye_sep=float(rng.uniform(0.095, 0.135)), eye_y=float(rng.uniform(-0.08, -0.03)),
        eye_w=float(rng.uniform(0.038, 0.055)), brow_gap=float(rng.uniform(0.035, 0.06)),
        brow_thick=float(rng.uniform(0.012, 0.03)), nose_len=float(rng.uniform(0.06, 0.11)),
        nose_w=float(rng.uniform(0.025, 0.045)), mouth_y=float(rng.uniform(0.13, 0.19)),
        mouth_w=float(rng.uniform(0.075, 0.105)), hairline=float(rng.uniform(0.15, 0.55)),
        hair_style=int(rng.integers(4)), beard=int(rng.choice(3, p=[0.7, 0.15, 0.15])),
        glasses=_colour(rng, neutral_p=0.6) if rng.random() < 0.2 else None,
    )


@dataclass(frozen=True)
class _Expression:
    """Facial action parameters; 0 is neutral for all but ``width``/``eyes`` (1 = neutral)."""

    curve: float = 0.0  # mouth corners: +1 smile, -1 frown
    open: float = 0.0  # mouth opening
    round: float = 0.0  # O-shaped mouth (surprise)
    width: float = 1.0
    asym: float = 0.0  # one corner / upper lip raised (disgust)
    brow_raise: float = 0.0
    brow_tilt: float = 0.0  # +1 inner ends up (sad, fear), -1 inner ends down (anger)
    eyes: float = 1.0  # eye openness
    wrinkle: float = 0.0  # nose/glabella wrinkles


# FER2013 label order: 0 Angry, 1 Disgust, 2 Fear, 3 Happy, 4 Sad, 5 Surprise, 6 Neutral.
_PROTOTYPES = (
    _Expression(curve=-0.35, width=0.85, brow_raise=-0.7, brow_tilt=-1.0, eyes=0.7, wrinkle=0.6),
    _Expression(curve=-0.5, open=0.15, width=0.95, asym=0.9, brow_raise=-0.4, brow_tilt=-0.4, eyes=0.55, wrinkle=1.0),
    _Expression(curve=-0.25, open=0.55, width=1.25, brow_raise=0.8, brow_tilt=0.9, eyes=1.5),
    _Expression(curve=1.0, open=0.35, width=1.3, brow_raise=0.1, eyes=0.7),
    _Expression(curve=-1.0, width=0.95, brow_raise=0.2, brow_tilt=1.0, eyes=0.65),
    _Expression(open=1.0, round=1.0, width=0.8, brow_raise=1.0, brow_tilt=0.2, eyes=1.55),
    _Expression(),
)


def _jitter_expression(rng: np.random.Generator, proto: _Expression, intensity: float, spread: float) -> _Expression:
    """Scale a prototype towards neutral and add noise, so classes overlap like real faces."""
    neutral = _Expression()
    values = {}
    for f in dataclasses.fields(_Expression):
        n, p = getattr(neutral, f.name), getattr(proto, f.name)
        values[f.name] = float(n + intensity * (p - n) + rng.normal(0.0, spread))
    values["open"] = max(0.0, values["open"])
    values["round"] = float(np.clip(values["round"], 0.0, 1.0))
    values["eyes"] = max(0.15, values["eyes"])
    values["width"] = max(0.6, values["width"])
    return _Expression(**values)


def _draw_face(draw: ImageDraw.ImageDraw, f: _FaceIdentity, e: _Expression, size: int, scale: float,
               clothes: Colour) -> None:
    """Draw a frontal face in face units (origin = image centre, 1 = image size)."""

    def P(x: float, y: float) -> Point:
        return (size / 2 + x * scale * size, size / 2 + y * scale * size)

    def box(x0: float, y0: float, x1: float, y1: float) -> list[float]:
        (a, b), (c, d) = P(x0, y0), P(x1, y1)
        return [a, b, c, d]

    def px(v: float) -> int:
        return max(1, round(v * scale * size))

    cy, fw, fh = 0.03, f.face_w, f.face_h
    dark_skin = _shade(f.skin, 0.78)
    if f.hair_style == 1:  # long hair falls behind the face and neck
        draw.rounded_rectangle(box(-fw * 1.25, cy - fh * 1.1, fw * 1.25, 0.6), radius=px(0.12), fill=f.hair)
    draw.rectangle(box(-fw * 0.42, cy + fh * 0.5, fw * 0.42, 0.6), fill=dark_skin)  # neck
    draw.ellipse(box(-0.48, cy + fh * 1.05, 0.48, 0.95), fill=clothes)  # shoulders
    for s in (-1, 1):  # ears
        draw.ellipse(box(s * fw - 0.035, cy - 0.07, s * fw + 0.035, cy + 0.05), fill=dark_skin)
    draw.ellipse(box(-fw, cy - fh, fw, cy + fh), fill=f.skin)
    if f.beard == 2:
        draw.chord(box(-fw, cy - fh, fw, cy + fh), 25, 155, fill=f.hair)
    top = cy - fh * 1.08
    if f.hair_style != 2:
        bottom = 2 * (cy - fh * f.hairline) - top
        draw.chord(box(-fw * 1.06, top, fw * 1.06, bottom), 180, 360, fill=f.hair)
    if f.hair_style == 3:  # fringe down to the brows
        brow_y = cy + f.eye_y - f.brow_gap - 0.02
        draw.polygon([P(-fw * 0.85, cy - fh * 0.6), P(fw * 0.85, cy - fh * 0.6), P(fw * 0.6, brow_y),
                      P(-fw * 0.3, brow_y - 0.02)], fill=f.hair)

    ey = cy + f.eye_y
    for s in (-1, 1):
        ex, ew = s * f.eye_sep, f.eye_w
        eh = ew * 0.55 * e.eyes
        if eh < ew * 0.15:
            draw.line([P(ex - ew, ey), P(ex + ew, ey)], fill=(40, 30, 30), width=px(0.008))
        else:
            draw.ellipse(box(ex - ew, ey - eh, ex + ew, ey + eh), fill=(238, 236, 230), outline=(50, 40, 40))
            r = min(ew * 0.5, eh)
            draw.ellipse(box(ex - r, ey - r, ex + r, ey + r), fill=f.iris)
            draw.ellipse(box(ex - r * 0.45, ey - r * 0.45, ex + r * 0.45, ey + r * 0.45), fill=(15, 10, 10))
        by = ey - f.brow_gap - 0.035 * e.brow_raise
        inner = (ex - s * ew * 0.9, by - 0.04 * e.brow_tilt)
        outer = (ex + s * ew * 1.25, by + 0.006)
        draw.line([P(*inner), P(*outer)], fill=_shade(f.hair, 0.8), width=px(f.brow_thick))
        if f.glasses is not None:
            gr = ew * 1.45
            draw.ellipse(box(ex - gr, ey - gr * 0.8, ex + gr, ey + gr * 0.8), outline=f.glasses, width=px(0.008))
    if f.glasses is not None:
        draw.line([P(-f.eye_sep + f.eye_w * 1.45, ey), P(f.eye_sep - f.eye_w * 1.45, ey)],
                  fill=f.glasses, width=px(0.008))
    if e.wrinkle > 0.45:  # wrinkled nose bridge / glabella
        for k in range(3):
            y = ey - 0.01 + 0.014 * k
            draw.line([P(-0.02, y), P(0.02, y)], fill=dark_skin, width=px(0.006))

    tip = ey + f.nose_len + 0.02
    draw.line([P(0.0, ey + 0.015), P(0.008, tip)], fill=dark_skin, width=px(0.008))
    for s in (-1, 1):
        nx = s * f.nose_w * 0.55
        draw.ellipse(box(nx - 0.012, tip - 0.008, nx + 0.012, tip + 0.008), fill=_shade(f.skin, 0.55))

    my, w = cy + f.mouth_y, f.mouth_w * e.width * (1.0 - 0.4 * e.round)
    if e.curve > 0.4:  # smile lines
        for s in (-1, 1):
            draw.line([P(s * f.nose_w * 1.3, tip), P(s * (w + 0.015), my - 0.03 * e.curve)],
                      fill=dark_skin, width=px(0.006))
    if f.beard == 1:
        draw.polygon([P(-w * 1.1, my - 0.008), P(w * 1.1, my - 0.008), P(w * 0.8, my - 0.03), P(-w * 0.8, my - 0.03)],
                     fill=f.hair)
    us = np.linspace(-1.0, 1.0, 13)
    xs = us * w
    mid = my - 0.05 * e.curve * us**2 - 0.03 * e.asym * np.clip(us, 0, None)
    profile = (1.0 - us**2) ** (0.9 - 0.45 * e.round)
    opening = 0.11 * e.open * profile
    lip = 0.012 * profile + 0.002
    upper = mid - 0.3 * opening - 0.008 * e.asym * profile
    lower = mid + opening
    outer = [P(x, y - t) for x, y, t in zip(xs, upper, lip)]
    outer += [P(x, y + t) for x, y, t in zip(xs[::-1], lower[::-1], lip[::-1])]
    draw.polygon(outer, fill=f.lips)
    if e.open > 0.08:
        inside = [P(x, y) for x, y in zip(xs, upper)] + [P(x, y) for x, y in zip(xs[::-1], lower[::-1])]
        draw.polygon(inside, fill=(70, 20, 25))
        if e.curve > 0.3:  # teeth in an open smile
            teeth = [P(x, y) for x, y in zip(xs, upper)]
            teeth += [P(x, y + 0.35 * (lo - y)) for x, y, lo in zip(xs[::-1], upper[::-1], lower[::-1])]
            draw.polygon(teeth, fill=(240, 238, 228))
    else:
        draw.line([P(x, y) for x, y in zip(xs, mid)], fill=_shade(f.lips, 0.5), width=px(0.007))


def _face_image(rng: np.random.Generator, f: _FaceIdentity, e: _Expression, size: int, *,
                rotate: float, shift: float, grey: bool, zoom: float = 1.0, supersample: int = 1) -> Image.Image:
    """Render, then move (rotation, shift, scale) and light (gradient, cast, noise) the face."""
    canvas = size * supersample
    bg = _colour(rng, sat=(0.0, 0.5), val=(0.2, 0.9), neutral_p=0.3)
    img = Image.new("RGB", (canvas, canvas), bg)
    _draw_face(ImageDraw.Draw(img), f, e, canvas, zoom * float(rng.uniform(0.92, 1.08)),
               _colour(rng, neutral_p=0.3))
    img = img.rotate(float(rng.uniform(-rotate, rotate)), resample=Image.BILINEAR,
                     translate=tuple(float(v) for v in rng.uniform(-shift, shift, 2) * canvas), fillcolor=bg)
    if supersample > 1:
        img = img.reduce(supersample)
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 0.9)) * size / 112))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    phi = rng.uniform(0, 2 * math.pi)
    light = rng.uniform(0.75, 1.2) + rng.uniform(0.0, 0.7) * (xx * math.cos(phi) + yy * math.sin(phi))
    arr = np.asarray(img, dtype=np.float32) * light[..., None] * rng.uniform(0.9, 1.1, 3)
    if grey:
        arr = arr @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return _finish(arr, rng, float(rng.uniform(2.0, 7.0)))


def _face_nuisance_expression(rng: np.random.Generator) -> _Expression:
    """Face-recognition photos: mostly neutral, sometimes smiling or talking."""
    proto = _PROTOTYPES[3] if rng.random() < 0.35 else _PROTOTYPES[6]
    return _jitter_expression(rng, proto, float(rng.uniform(0.3, 1.0)), 0.12)


_SYLLABLES = ("ka", "lo", "mi", "ra", "te", "su", "no", "vi", "de", "an", "el", "or",
              "ba", "ri", "ta", "mo", "ne", "li", "sa", "to", "gu", "pe", "ha", "zo")


def _person_names(rng: np.random.Generator, n: int) -> list[str]:
    """LFW-like ``First_Last`` names (letters only, so ``Name_0001.jpg`` parses cleanly)."""
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        first = "".join(rng.choice(_SYLLABLES, 2)).capitalize()
        last = "".join(rng.choice(_SYLLABLES, int(rng.integers(2, 4)))).capitalize()
        name = f"{first}_{last}"
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def _lfw_pairs(rng: np.random.Generator, names: list[str], sizes: FaceSizes) -> list[str]:
    """LFW ``pairs.txt`` lines: per fold, matched then mismatched, people disjoint across folds."""
    order = [names[i] for i in rng.permutation(len(names))]
    n = sizes.images_per_test_id
    lines = [f"{sizes.num_folds}\t{sizes.pairs_per_fold}"]
    for fold in np.array_split(np.array(order, dtype=object), sizes.num_folds):
        people = sorted(str(p) for p in fold)
        matched = [(p, i, j) for p in people for i in range(1, n + 1) for j in range(i + 1, n + 1)]
        mismatched = [(a, i, b, j) for ai, a in enumerate(people) for b in people[ai + 1 :]
                      for i in range(1, n + 1) for j in range(1, n + 1)]
        for k in rng.choice(len(matched), sizes.pairs_per_fold, replace=False):
            p, i, j = matched[k]
            lines.append(f"{p}\t{i}\t{j}")
        for k in rng.choice(len(mismatched), sizes.pairs_per_fold, replace=False):
            a, i, b, j = mismatched[k]
            lines.append(f"{a}\t{i}\t{b}\t{j}")
    return lines


def _write_faces(root: Path, seed: int, sizes: FaceSizes) -> None:
    """``train/<7-digit id>/<nnn>.jpg`` + ``lfw/<Name>/<Name>_<nnnn>.jpg`` + ``pairs.txt``."""
    S = sizes.size
    for ident in range(sizes.num_train_ids):
        face = _random_face(_rng(seed, 11, ident))
        folder = root / "train" / f"{ident:07d}"
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(sizes.images_per_train_id):
            rng = _rng(seed, 12, ident, k)
            img = _face_image(rng, face, _face_nuisance_expression(rng), S, rotate=12.0, shift=0.05, grey=False)
            (folder / f"{k:03d}.jpg").write_bytes(_jpeg(img))
    names = _person_names(_rng(seed, 13), sizes.num_test_ids)
    for ident, name in enumerate(names):
        face = _random_face(_rng(seed, 14, ident))
        folder = root / "lfw" / name
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(sizes.images_per_test_id):
            rng = _rng(seed, 15, ident, k)
            img = _face_image(rng, face, _face_nuisance_expression(rng), S, rotate=12.0, shift=0.05, grey=False)
            (folder / f"{name}_{k + 1:04d}.jpg").write_bytes(_jpeg(img))
    lines = _lfw_pairs(_rng(seed, 16), names, sizes)
    (root / "pairs.txt").write_text("\n".join(lines) + "\n", encoding="ascii")


def _write_expressions(root: Path, seed: int, sizes: ExpressionSizes) -> None:
    """One ``fer2013.csv`` with Training, PublicTest, PrivateTest rows in that order."""
    root.mkdir(parents=True, exist_ok=True)
    splits = (("Training", sizes.num_train), ("PublicTest", sizes.num_public_test),
              ("PrivateTest", sizes.num_private_test))
    with open(root / "fer2013.csv", "w", newline="", encoding="ascii") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["emotion", "pixels", "Usage"])
        for split_id, (usage, count) in enumerate(splits):
            labels = np.arange(count) % len(EXPRESSION_NAMES)
            _rng(seed, 21, split_id).shuffle(labels)
            for k, label in enumerate(labels):
                rng = _rng(seed, 22, split_id, k)
                expr = _jitter_expression(rng, _PROTOTYPES[int(label)], float(rng.uniform(0.65, 1.1)), 0.12)
                img = _face_image(rng, _random_face(rng), expr, FER_SIZE, rotate=7.0, shift=0.03,
                                  grey=True, zoom=1.55, supersample=2)
                writer.writerow([int(label), " ".join(map(str, np.asarray(img).ravel().tolist())), usage])


# --------------------------------------------------------------------- public generators
@dataclass(frozen=True)
class _Generator:
    version: int  # bump when the images change, so caches regenerate
    sizes: type
    write: Callable[[Path, int, Any], None]
    entry: str  # what the generator returns, relative to its root ("" = the root)


_GENERATORS: dict[str, _Generator] = {
    "synthetic_reid": _Generator(1, ReIDSizes, _write_reid, ""),
    "synthetic_faces": _Generator(1, FaceSizes, _write_faces, ""),
    "synthetic_expressions": _Generator(1, ExpressionSizes, _write_expressions, "fer2013.csv"),
}
SYNTHETIC_DATASETS = tuple(_GENERATORS)


def _generator(name: str) -> _Generator:
    if name not in _GENERATORS:
        raise DataError(f"unknown synthetic dataset {name!r}; valid: {', '.join(SYNTHETIC_DATASETS)}")
    return _GENERATORS[name]


def _generate(name: str, root: Path, seed: int, sizes: Mapping[str, Any]) -> Path:
    gen = _generator(name)
    resolved = _resolve_sizes(gen.sizes, name, sizes)
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise DataError(f"{root}: refusing to generate {name} into a non-empty folder")
    root.mkdir(parents=True, exist_ok=True)
    gen.write(root, int(seed), resolved)
    return root / gen.entry if gen.entry else root


def generate_synthetic_reid(root: Path, *, seed: int = 0, **sizes: int) -> Path:
    """Write a Market-1501-layout ReID set into ``root``; returns ``root``.

    ``bounding_box_train/`` (train ids), ``query/`` (one image per test id and query camera),
    ``bounding_box_test/`` (the test ids' other images, from other cameras *and* from each
    query camera, plus ``0000`` distractors and ``-1`` junk). Sizes: :class:`ReIDSizes`.
    """
    return _generate("synthetic_reid", root, seed, sizes)


def generate_synthetic_faces(root: Path, *, seed: int = 0, **sizes: int) -> Path:
    """Write identity folders ``train/`` plus an LFW-style ``lfw/`` + ``pairs.txt``; returns ``root``.

    Test people are disjoint from training people. Sizes: :class:`FaceSizes`.
    """
    return _generate("synthetic_faces", root, seed, sizes)


def generate_synthetic_expressions(root: Path, *, seed: int = 0, **sizes: int) -> Path:
    """Write ``root/fer2013.csv`` (48x48 grey, 7 classes) and return the csv's path.

    Sizes: :class:`ExpressionSizes`.
    """
    return _generate("synthetic_expressions", root, seed, sizes)


# ---------------------------------------------------------------------------------- cache
def _file_listing(root: Path) -> list[str]:
    """``relative/path<TAB>size`` for every file but the manifest, sorted: cheap staleness check."""
    out = []
    for dirpath, _dirs, files in os.walk(root):
        for fname in files:
            path = Path(dirpath) / fname
            rel = path.relative_to(root).as_posix()
            if rel != MANIFEST_NAME:
                out.append(f"{rel}\t{path.stat().st_size}")
    return sorted(out)


def _expected_manifest(name: str, gen: _Generator, seed: int, sizes: Any) -> dict[str, Any]:
    return {"name": name, "version": gen.version, "seed": seed, "sizes": dataclasses.asdict(sizes),
            "entry": gen.entry}


def _is_complete(folder: Path, expected: Mapping[str, Any]) -> bool:
    """True iff ``folder`` holds a finished dataset for exactly these parameters."""
    try:
        manifest = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict) or any(manifest.get(k) != v for k, v in expected.items()):
        return False
    listing = _file_listing(folder)
    digest = hashlib.sha256("\n".join(listing).encode()).hexdigest()
    return manifest.get("file_count") == len(listing) and manifest.get("files_sha256") == digest


def _write_manifest(folder: Path, expected: Mapping[str, Any]) -> None:
    listing = _file_listing(folder)
    manifest = dict(expected, file_count=len(listing),
                    files_sha256=hashlib.sha256("\n".join(listing).encode()).hexdigest())
    tmp = folder / f".{MANIFEST_NAME}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, folder / MANIFEST_NAME)


def _install(tmp: Path, final: Path, expected: Mapping[str, Any]) -> None:
    """Move a finished ``tmp`` into place; tolerate a concurrent process doing the same."""
    error: OSError | None = None
    for _attempt in range(3):
        try:
            os.replace(tmp, final)
            return
        except OSError as exc:  # `final` exists (non-empty dir or a file): someone else's, or stale
            error = exc
        if _is_complete(final, expected):
            shutil.rmtree(tmp, ignore_errors=True)
            return
        trash = final.parent / f".stale-{final.name}-{uuid.uuid4().hex[:8]}"
        try:
            os.replace(final, trash)
        except FileNotFoundError:
            continue
        if trash.is_dir():
            shutil.rmtree(trash, ignore_errors=True)
        else:
            trash.unlink(missing_ok=True)
    raise DataError(f"{final}: could not install the generated dataset ({error})")


def _newest_mtime(folder: Path) -> float:
    """The latest change in ``folder`` or its direct entries: a live generator writes a file
    every few milliseconds, which touches the file or its sub-folder."""
    newest = folder.stat().st_mtime
    with os.scandir(folder) as entries:
        for entry in entries:
            try:
                newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
            except FileNotFoundError:
                continue
    return newest


def remove_stale_generations(base: Path, *, min_age_s: float = STALE_GENERATION_AGE_S) -> list[Path]:
    """Delete the half-written datasets that killed generations left in the cache ``base``.

    A kill during generation leaves its ``.tmp-<dataset>-*`` folder (never a folder that looks
    complete: see ``ensure_dataset``), and an interrupted install its ``.stale-*`` one; nothing
    else removes them. Only those names are touched, and only once nothing in them changed for
    ``min_age_s`` (a live generator, maybe another process, writes far more often). Returns the
    folders removed.
    """
    removed: list[Path] = []
    if not base.is_dir():
        return removed
    cutoff = time.time() - min_age_s
    for folder in base.iterdir():
        if not folder.name.startswith((".tmp-", ".stale-")) or not folder.is_dir() or folder.is_symlink():
            continue
        try:
            if _newest_mtime(folder) > cutoff:
                continue
        except FileNotFoundError:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def dataset_folder(name: str, *, seed: int = 0, cache_dir: Path | str | None = None, **sizes: Any) -> Path:
    """Where ``ensure_dataset`` keeps this dataset: ``<cache>/<name>-<hash of version, seed, sizes>``."""
    gen = _generator(name)
    expected = _expected_manifest(name, gen, int(seed), _resolve_sizes(gen.sizes, name, sizes))
    key = hashlib.sha256(json.dumps(expected, sort_keys=True).encode()).hexdigest()[:12]
    return cache_root(cache_dir) / f"{name}-{key}"


def is_cached(name: str, folder: Path, *, seed: int = 0, **sizes: Any) -> bool:
    """Whether ``folder`` (see ``dataset_folder``) holds the finished dataset: nothing to generate."""
    gen = _generator(name)
    return _is_complete(folder, _expected_manifest(name, gen, int(seed), _resolve_sizes(gen.sizes, name, sizes)))


def ensure_dataset(name: str, *, seed: int = 0, cache_dir: Path | str | None = None, **sizes: int) -> Path:
    """Return the path of synthetic dataset ``name`` in the cache, generating it if needed.

    The folder is ``<cache>/<name>-<hash of version, seed, sizes>``; it counts as present only
    if its ``manifest.json`` (written last) matches and the file list is intact, otherwise it
    is regenerated into a temp folder and swapped in with ``os.replace``, so an interrupted
    run never leaves a half dataset that looks complete. The returned path is what the
    matching ``generate_*`` returns (the root, or ``fer2013.csv`` for expressions).
    """
    gen = _generator(name)
    resolved = _resolve_sizes(gen.sizes, name, sizes)
    expected = _expected_manifest(name, gen, int(seed), resolved)
    base = cache_root(cache_dir)
    final = dataset_folder(name, seed=seed, cache_dir=cache_dir, **sizes)
    if not _is_complete(final, expected):
        remove_stale_generations(base)
        try:
            base.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=base))
        except OSError as exc:
            raise DataError(f"{base}: cannot create the dataset cache ({exc.strerror or exc})") from None
        try:
            gen.write(tmp, int(seed), resolved)
            _write_manifest(tmp, expected)
            os.chmod(tmp, 0o755)  # mkdtemp makes it owner-only
            _install(tmp, final, expected)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, OSError) and not isinstance(exc, WriteError):  # disk full mid-generation
                raise write_error("write", Path(exc.filename) if exc.filename else tmp, exc) from exc
            raise
    return final / gen.entry if gen.entry else final
