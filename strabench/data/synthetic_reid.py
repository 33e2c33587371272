"""``synthetic_reid``: articulated pedestrians seen by six cameras, in the Market-1501 layout.

Identity lives in part-level cues (shirt/trouser/hair colours, a stripe or logo, a backpack,
body proportions) drawn once per person from ``(seed, 1, pid)``; everything else is drawn per
image: the pose (``_Pose``), the camera's background, colour cast, blur and noise, the figure's
scale and position, clutter and occluders.

``deformation`` (``ReIDSizes.deformation``) controls the pose alone, so that a sweep over it is a
controlled experiment: every level draws the same people, the same cameras and the same
per-image random numbers, and only scales how far the pose departs from a rigid, front-facing
stance (``_draw_pose``). 0: no limb swing, no knee or elbow bend, no lean, no head offset, feet
straight, never seen from behind. 1: the generator of earlier versions, image for image. Above 1 the swings,
bends, lean and the chance of being seen from behind grow further (the latter up to one half),
and three changes appear that level 1 lacks, drawn from a generator of their own so that the
rest of the image stays the same: the torso turns sideways (narrower shoulders and hips), the
whole figure tilts about its hips, and a smooth horizontal S-shaped warp bends the figure
(non-rigid deformation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from strabench.data._synthetic_kit import (
    Colour,
    _capsule,
    _colour,
    _direction,
    _finish,
    _hair,
    _jpeg,
    _rng,
    _skin,
    _sub_quad,
)
from strabench.data.synthetic_sizes import NUM_CAMERAS

#: Role of the generator that draws what only strong deformation (above 1) adds (tilt, turn, warp).
_EXTRA_POSE_ROLE = 8


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


@dataclass(frozen=True)
class _Pose:
    """One image's pose. Angles in radians, measured from straight down, positive towards +x."""

    lean: float  # shoulders' x offset from the hips, in torso lengths
    facing_front: bool
    swing: float  # legs' (and, opposed, arms') swing angle
    walk: int  # +1 / -1: the way the knees bend (and, scaled by the deformation up to 1, the feet point)
    shins: tuple[float, float]  # knee bend of the left and right leg
    arm_up: tuple[bool, bool]  # waving / phoning
    arms: tuple[float, float]  # upper-arm angle offsets, left and right
    forearms: tuple[float, float]  # elbow bend, left and right
    head: float  # head's x offset, in head radii
    feet: float = 0.0  # the feet's sideways offset, in leg widths x 0.3 (the walking direction)
    turn: float = 1.0  # width of shoulders and hips (1: square to the camera, < 1: turned sideways)
    tilt: float = 0.0  # rotation of the whole figure about its hips
    warp: float = 0.0  # amplitude of the S-shaped warp, in figure heights
    warp_phase: float = 0.0


def _draw_pose(rng: np.random.Generator, deformation: float, extra: np.random.Generator | None) -> _Pose:
    """Draw a pose; ``deformation`` scales each departure from the rigid stance.

    The draws from ``rng`` are the same, in the same order, at every level (each value is drawn,
    then scaled), so the camera nuisance drawn after the pose is too. At level 1 every value is
    what earlier versions drew. ``extra`` (needed above 1) draws the turn, tilt and warp.
    """
    d = deformation
    lean = rng.normal(0.0, 0.05) * d
    facing_front = bool(rng.random() < 1.0 - min(0.4 * d, 0.5))
    phase, amp = rng.uniform(0, 2 * math.pi), rng.uniform(0.05, 0.55) * d
    walk = 1 if rng.random() < 0.5 else -1
    shins = (rng.uniform(0.0, 0.55) * d, rng.uniform(0.0, 0.55) * d)
    arm_up, arms, forearms = [], [], []
    for _side in (-1, 1):
        up = bool(rng.random() < 0.1 * min(d, 3.0))
        arm_up.append(up)
        arms.append(rng.uniform(1.9, 2.8) if up else rng.uniform(0.0, 0.25) * d)
        forearms.append(rng.uniform(-0.2, 0.9) * d)
    head = rng.normal(0, 0.1) * d
    pose = _Pose(lean, facing_front, amp * math.sin(phase), walk, shins, (arm_up[0], arm_up[1]),
                 (arms[0], arms[1]), (forearms[0], forearms[1]), head, walk * min(d, 1.0))
    strong = d - 1.0
    if strong <= 0.0:
        return pose
    if extra is None:
        raise ValueError("deformation above 1 needs the extra pose generator")
    turn = 1.0 - min(0.6, 0.3 * strong) * extra.random()
    tilt = extra.normal(0.0, 0.12) * strong
    warp = 0.04 * strong * extra.random()
    return _Pose(**{**pose.__dict__, "turn": turn, "tilt": tilt, "warp": warp,
                    "warp_phase": extra.uniform(0, 2 * math.pi)})


def _draw_person(draw: ImageDraw.ImageDraw, p: _Person, pose: _Pose, cx: float, top: float, h: float) -> None:
    """Draw an articulated figure in ``pose`` (the pose is fresh per image, the person is not)."""
    head_r = 0.064 * h * p.head
    sh_y = top + 1.95 * head_r + 0.02 * h
    torso_len = 0.29 * h * p.torso_len
    hip_y = sh_y + torso_len
    tw, hw = 0.25 * h * p.build, 0.2 * h * p.build
    if pose.turn != 1.0:
        tw, hw = tw * pose.turn, hw * pose.turn
    sx = cx + pose.lean * torso_len  # lean: shoulders move relative to hips
    quad = [(sx - tw / 2, sh_y), (sx + tw / 2, sh_y), (cx + hw / 2, hip_y), (cx - hw / 2, hip_y)]
    seg = max(1.0, (top + 0.98 * h - hip_y) / 2)
    leg_w, arm_w, arm_seg = 0.09 * h * p.build, 0.062 * h * p.build, 0.185 * h
    facing_front, swing, walk = pose.facing_front, pose.swing, pose.walk

    if p.long_hair:
        hx = sx
        draw.rounded_rectangle([hx - 1.15 * head_r, top + head_r, hx + 1.15 * head_r, sh_y + 0.07 * h],
                               radius=head_r * 0.5, fill=p.hair)
    if p.bag is not None and facing_front:  # backpack peeks out behind the shoulders
        draw.rectangle([sx - 0.6 * tw, sh_y + 0.03 * h, sx + 0.6 * tw, sh_y + 0.6 * torso_len], fill=p.bag)

    for index, (side, angle) in enumerate(((-1, -0.08 + swing), (1, 0.08 - swing))):
        hip = (cx + side * hw * 0.27, hip_y)
        knee = (hip[0] + seg * _direction(angle)[0], hip[1] + seg * _direction(angle)[1])
        shin_angle = angle - walk * pose.shins[index]
        foot = (knee[0] + seg * _direction(shin_angle)[0], knee[1] + seg * _direction(shin_angle)[1])
        _capsule(draw, hip, knee, leg_w, p.trousers)
        _capsule(draw, knee, foot, leg_w * 0.9, p.skin if p.shorts else p.trousers)
        fx = foot[0] + pose.feet * leg_w * 0.3
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

    for index, (side, base) in enumerate(((-1, -0.12), (1, 0.12))):
        if pose.arm_up[index]:  # waving / phoning: one arm up
            angle = side * pose.arms[index]
        else:
            angle = base + side * pose.arms[index] - side * swing * 1.1
        shoulder = (sx + side * (tw / 2 - arm_w * 0.4), sh_y + arm_w * 0.6)
        elbow = (shoulder[0] + arm_seg * _direction(angle)[0], shoulder[1] + arm_seg * _direction(angle)[1])
        fore = angle + side * pose.forearms[index]
        hand = (elbow[0] + arm_seg * _direction(fore)[0], elbow[1] + arm_seg * _direction(fore)[1])
        _capsule(draw, shoulder, elbow, arm_w, p.shirt)
        _capsule(draw, elbow, hand, arm_w * 0.9, p.shirt if p.long_sleeves else p.skin)
        r = arm_w * 0.55
        draw.ellipse([hand[0] - r, hand[1] - r, hand[0] + r, hand[1] + r], fill=p.skin)

    hx, hy = sx + pose.head * head_r, top + head_r
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


def _hip_y(p: _Person, top: float, h: float) -> float:
    """Where ``_draw_person`` puts the hips (the centre of a whole-figure tilt)."""
    head_r = 0.064 * h * p.head
    return top + 1.95 * head_r + 0.02 * h + 0.29 * h * p.torso_len


def _warp_rows(layer: Image.Image, amplitude: float, phase: float, top: float, h: float) -> Image.Image:
    """Shift each row of an RGBA layer sideways by ``amplitude * sin(...)``: one S-shaped bend
    over the figure's height (a non-rigid deformation; the background is not on the layer)."""
    arr = np.asarray(layer)
    height, width = arr.shape[:2]
    rows = np.arange(height, dtype=np.float64)
    shift = np.rint(amplitude * np.sin(2.0 * math.pi * (rows - top) / max(h, 1.0) + phase)).astype(np.int64)
    cols = np.arange(width)[None, :] - shift[:, None]
    valid = (cols >= 0) & (cols < width)
    out = np.take_along_axis(arr, np.clip(cols, 0, width - 1)[..., None].repeat(4, axis=2), axis=1)
    out = np.where(valid[..., None], out, 0).astype(np.uint8)
    return Image.fromarray(out, "RGBA")


def _draw_figure(img: Image.Image, p: _Person, pose: _Pose, cx: float, top: float, h: float) -> None:
    """Draw the figure onto ``img``; with a tilt or warp (deformation above 1) via a transparent
    layer that is bent and rotated about the hips before it is laid over the background."""
    if pose.tilt == 0.0 and pose.warp == 0.0:
        _draw_person(ImageDraw.Draw(img), p, pose, cx, top, h)
        return
    layer = Image.new("RGBA", img.size, (0, 0, 0, 0))
    _draw_person(ImageDraw.Draw(layer), p, pose, cx, top, h)
    if pose.warp:
        layer = _warp_rows(layer, pose.warp * h, pose.warp_phase, top, h)
    if pose.tilt:
        layer = layer.rotate(math.degrees(pose.tilt), resample=Image.BILINEAR, center=(cx, _hip_y(p, top, h)))
    base = img.convert("RGBA")
    base.alpha_composite(layer)
    img.paste(base.convert("RGB"))


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


def _reid_image(rng: np.random.Generator, cam: _Camera, height: int, width: int, person: _Person | None, *,
                junk: bool = False, deformation: float = 1.0, extra: np.random.Generator | None = None) -> bytes:
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
        _draw_figure(img, person, _draw_pose(rng, deformation, extra), cx, top, h)
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


def write_reid(root: Path, seed: int, sizes: Any) -> None:
    """Market-1501 layout (``strabench.data.synthetic.generate_synthetic_reid``); ``sizes`` is a
    ``ReIDSizes``."""
    H, W = sizes.height, sizes.width
    deformation = sizes.deformation
    cams = _make_cameras(seed, H, W)
    layout_rng = _rng(seed, 0)
    pids = layout_rng.choice(np.arange(1, 1502), sizes.num_train_ids + sizes.num_test_ids, replace=False)
    train_pids = sorted(int(p) for p in pids[: sizes.num_train_ids])
    test_pids = sorted(int(p) for p in pids[sizes.num_train_ids :])
    frames = [int(v) for v in layout_rng.integers(1, 5000, NUM_CAMERAS)]
    folders = {k: root / k for k in ("bounding_box_train", "query", "bounding_box_test")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)

    def write(folder: str, pid: int, cam: int, person: _Person | None, key: tuple[int, ...],
              rng: np.random.Generator | None = None, junk: bool = False) -> None:
        frames[cam] += int(layout_rng.integers(1, 120))  # unique frame number per camera
        seq = 1 + (frames[cam] // 20000) % 6
        name = f"{pid:04d}" if pid >= 0 else "-1"
        fname = f"{name}_c{cam + 1}s{seq}_{frames[cam]:06d}_{int(layout_rng.integers(0, 4)):02d}.jpg"
        rng = rng if rng is not None else _rng(seed, *key)
        extra = _rng(seed, _EXTRA_POSE_ROLE, *key) if deformation > 1.0 else None
        image = _reid_image(rng, cams[cam], H, W, person, junk=junk, deformation=deformation, extra=extra)
        (folders[folder] / fname).write_bytes(image)

    for pid in train_pids:
        person = _random_person(_rng(seed, 1, pid))
        pcams = layout_rng.choice(NUM_CAMERAS, int(layout_rng.integers(2, 5)), replace=False)
        for k in range(sizes.train_images_per_id):
            write("bounding_box_train", pid, int(pcams[k % len(pcams)]), person, (2, pid, k))

    q = sizes.query_cams_per_id
    for pid in test_pids:
        person = _random_person(_rng(seed, 1, pid))
        n_cams = min(NUM_CAMERAS, q + int(layout_rng.integers(1, 3)))
        pcams = [int(c) for c in layout_rng.choice(NUM_CAMERAS, n_cams, replace=False)]
        gallery_cams = list(pcams[:q])  # one same-camera gallery image per query camera
        others = pcams[q:]
        gallery_cams += [others[k % len(others)] for k in range(sizes.gallery_images_per_id - q)]
        for k, cam in enumerate(pcams[:q]):
            write("query", pid, cam, person, (3, pid, k))
        for k, cam in enumerate(gallery_cams):
            write("bounding_box_test", pid, cam, person, (4, pid, k))

    for k in range(sizes.num_distractors):  # pid 0: background and people outside the test set
        rng = _rng(seed, 5, k)
        person = _random_person(rng) if rng.random() < 0.5 else None
        write("bounding_box_test", 0, int(layout_rng.integers(NUM_CAMERAS)), person, (5, k), rng)
    for k in range(sizes.num_junk):  # pid -1: bad detections
        rng = _rng(seed, 6, k)
        write("bounding_box_test", -1, int(layout_rng.integers(NUM_CAMERAS)), _random_person(rng), (6, k), rng, junk=True)
