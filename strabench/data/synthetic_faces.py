"""``synthetic_faces`` (identity folders + LFW pairs) and ``synthetic_expressions`` (FER2013 csv).

Faces are drawn frontal in "face units" (``_draw_face``), then moved (rotation, shift, scale)
and lit (gradient, colour cast, noise, blur). Identity is face geometry and colour, drawn once
per person; expression is a small set of facial-action parameters (``_Expression``).

``deformation`` (``FaceSizes`` / ``ExpressionSizes``) scales how much a face moves and deforms
between images, drawing the same random numbers at every level (each value is drawn, then
scaled): for verification, the in-plane rotation, the shift and the intensity of the
non-identity expression (0: frontal, centred, neutral; 1: earlier versions, image for image);
for expressions, rotation and shift only (the expression is the label: scaling it would change
the task, not its nuisance).
"""

from __future__ import annotations

import csv
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from strabench.data._synthetic_kit import Colour, Point, _colour, _finish, _hair, _jpeg, _rng, _shade, _skin
from strabench.data.fer2013 import CLASS_NAMES as EXPRESSION_NAMES
from strabench.data.fer2013 import SIDE as FER_SIZE

#: Largest in-plane rotation (degrees) and shift (fraction of the image) at deformation 1.
FACE_ROTATE, FACE_SHIFT = 12.0, 0.05
FER_ROTATE, FER_SHIFT = 7.0, 0.03


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


def _face_nuisance_expression(rng: np.random.Generator, deformation: float = 1.0) -> _Expression:
    """Face-recognition photos: mostly neutral, sometimes smiling or talking (scaled by ``deformation``)."""
    proto = _PROTOTYPES[3] if rng.random() < 0.35 else _PROTOTYPES[6]
    return _jitter_expression(rng, proto, float(rng.uniform(0.3, 1.0)) * deformation, 0.12 * deformation)


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


def _matched_pairs(rng: np.random.Generator, people: list[str], order: np.ndarray, n: int, count: int) -> list[str]:
    """``count`` distinct matched pairs, people taken in ``order`` round-robin: each person is in
    one before anyone is in two. The image numbers of a person's pairs are a random order of its
    image combinations."""
    combos = [(i, j) for i in range(1, n + 1) for j in range(i + 1, n + 1)]
    lines: list[str] = []
    per_person: dict[int, np.ndarray] = {}
    for round_ in range(len(combos)):
        for index in order:
            if len(lines) == count:
                return lines
            if index not in per_person:
                per_person[int(index)] = rng.permutation(len(combos))
            i, j = combos[per_person[int(index)][round_]]
            lines.append(f"{people[index]}\t{i}\t{j}")
    return lines


def _mismatched_pairs(rng: np.random.Generator, people: list[str], queue: list[int], n: int, count: int) -> list[str]:
    """``count`` distinct mismatched pairs from consecutive couples of ``queue`` (the people not in
    a matched pair come first), then of fresh shuffles of everyone; random image numbers."""
    lines: list[str] = []
    seen: set[tuple[int, int, int, int]] = set()
    attempts = 0
    while len(lines) < count and attempts < 50 * count + 1000:
        if len(queue) < 2:
            queue = [int(k) for k in rng.permutation(len(people))]
        a, b = queue.pop(0), queue.pop(0)
        i, j = (int(v) for v in rng.integers(1, n + 1, 2))
        attempts += 1
        key = (a, i, b, j) if a < b else (b, j, a, i)
        if key not in seen:
            seen.add(key)
            lines.append(f"{people[a]}\t{i}\t{people[b]}\t{j}")
    if len(lines) < count:  # a fold so small that random couples keep repeating: take what is left
        rest = [(a, i, b, j) for a in range(len(people)) for b in range(a + 1, len(people))
                for i in range(1, n + 1) for j in range(1, n + 1) if (a, i, b, j) not in seen]
        for k in rng.choice(len(rest), count - len(lines), replace=False):
            a, i, b, j = rest[k]
            lines.append(f"{people[a]}\t{i}\t{people[b]}\t{j}")
    return lines


def _lfw_pairs(rng: np.random.Generator, names: list[str], sizes: Any) -> list[str]:
    """LFW ``pairs.txt`` lines: per fold, matched then mismatched, people disjoint across folds.

    Within a fold each person is used as rarely as the sizes allow: with at least three people
    per matched pair (``FaceSizes``' defaults) every person is in exactly one pair, so pairs are
    independent draws and a bootstrap over pairs is honest.
    """
    order = [names[i] for i in rng.permutation(len(names))]
    n = sizes.images_per_test_id
    count = sizes.pairs_per_fold
    lines = [f"{sizes.num_folds}\t{count}"]
    for fold in np.array_split(np.array(order, dtype=object), sizes.num_folds):
        people = sorted(str(p) for p in fold)
        shuffled = rng.permutation(len(people))
        lines += _matched_pairs(rng, people, shuffled, n, count)
        used = min(count, len(people))
        queue = [int(k) for k in shuffled[used:]] + [int(k) for k in shuffled[:used]]
        lines += _mismatched_pairs(rng, people, queue, n, count)
    return lines


def write_faces(root: Path, seed: int, sizes: Any) -> None:
    """``train/<7-digit id>/<nnn>.jpg`` + ``lfw/<Name>/<Name>_<nnnn>.jpg`` + ``pairs.txt`` (``sizes``: a ``FaceSizes``)."""
    S, d = sizes.size, sizes.deformation
    for ident in range(sizes.num_train_ids):
        face = _random_face(_rng(seed, 11, ident))
        folder = root / "train" / f"{ident:07d}"
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(sizes.images_per_train_id):
            rng = _rng(seed, 12, ident, k)
            img = _face_image(rng, face, _face_nuisance_expression(rng, d), S, rotate=FACE_ROTATE * d,
                              shift=FACE_SHIFT * d, grey=False)
            (folder / f"{k:03d}.jpg").write_bytes(_jpeg(img))
    names = _person_names(_rng(seed, 13), sizes.num_test_ids)
    for ident, name in enumerate(names):
        face = _random_face(_rng(seed, 14, ident))
        folder = root / "lfw" / name
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(sizes.images_per_test_id):
            rng = _rng(seed, 15, ident, k)
            img = _face_image(rng, face, _face_nuisance_expression(rng, d), S, rotate=FACE_ROTATE * d,
                              shift=FACE_SHIFT * d, grey=False)
            (folder / f"{name}_{k + 1:04d}.jpg").write_bytes(_jpeg(img))
    lines = _lfw_pairs(_rng(seed, 16), names, sizes)
    (root / "pairs.txt").write_text("\n".join(lines) + "\n", encoding="ascii")


def write_expressions(root: Path, seed: int, sizes: Any) -> None:
    """One ``fer2013.csv`` with Training, PublicTest, PrivateTest rows in that order (``sizes``: an ``ExpressionSizes``)."""
    root.mkdir(parents=True, exist_ok=True)
    d = sizes.deformation
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
                img = _face_image(rng, _random_face(rng), expr, FER_SIZE, rotate=FER_ROTATE * d, shift=FER_SHIFT * d,
                                  grey=True, zoom=1.55, supersample=2)
                writer.writerow([int(label), " ".join(map(str, np.asarray(img).ravel().tolist())), usage])
