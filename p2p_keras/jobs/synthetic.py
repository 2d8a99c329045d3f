"""Procedurally drawn "synthetic facades": a pix2pix dataset that needs no download.

Each pair is a label map in the 12 CMP Facade classes and a "photo" of it (texture, shadows,
camera noise), stored like the real `facades`: photo (A) left, label map (B) right, train "BtoA".
"""

import json
from pathlib import Path

import numpy as np
from PIL import Image

from p2p_keras import project_dir
from p2p_keras.data import atomic_path
from p2p_keras.segmenter import CLASS_NAMES, CMP_PALETTE, PALETTE_ARRAY  # noqa: F401

BACKGROUND, FACADE, WINDOW, DOOR, CORNICE, SILL = range(6)
BALCONY, BLIND, DECO, MOLDING, PILLAR, SHOP = range(6, 12)
SPLITS = ("train", "val", "test")
MANIFEST_NAME = "synthetic.json"
GENERATOR_VERSION = 2  # bump when the drawing changes: folders of older versions are redrawn

_WALLS = ((222, 210, 185), (205, 180, 130), (230, 220, 160), (190, 190, 185), (215, 190, 170),
          (175, 195, 170), (235, 232, 225), (160, 85, 60), (175, 105, 75))  # fmt: skip
_DOORS = ((105, 65, 38), (72, 48, 32), (55, 70, 58), (120, 40, 35), (60, 60, 65))
_SHUTTERS = ((60, 105, 70), (115, 75, 45), (150, 150, 140), (220, 218, 205), (70, 90, 120))
_CASTERS = (CORNICE, SILL, MOLDING, BALCONY, DECO)  # they stick out and cast shadows


class _Canvas:
    """A label map being painted, with each pixel's vertical position in its rectangle."""

    def __init__(self, size):
        self.size = size
        self.cls = np.full((size, size), BACKGROUND, np.int8)
        self.v = np.zeros((size, size), np.float32)  # 0 at the rectangle's top, 1 at its bottom

    def paint(self, cls, y0, y1, x0, x1):
        y0, y1, x0, x1 = (int(round(t)) for t in (y0, y1, x0, x1))
        r0, r1, c0, c1 = max(y0, 0), min(y1, self.size), max(x0, 0), min(x1, self.size)
        if r1 > r0 and c1 > c0:
            self.cls[r0:r1, c0:c1] = cls
            self.v[r0:r1, c0:c1] = ((np.arange(r0, r1) - y0 + 0.5) / (y1 - y0))[:, None]


def _layout(rng, s):
    """Paints a random facade: floors of windows over a ground floor of shops and a door."""
    c, u = _Canvas(s), rng.uniform
    top = s * u(0.03, 0.22)
    left = s * u(0.02, 0.12) if rng.random() < 0.35 else 0.0
    right = s - (s * u(0.02, 0.12) if rng.random() < 0.35 else 0.0)
    c.paint(FACADE, top, s, left, right)
    ground = (s - top) * u(0.17, 0.27)
    floors = int(np.clip(round((s - top - ground) / (s * u(0.13, 0.2))), 2, 6))
    floor_h = (s - top - ground) / floors
    cols = int(np.clip(round((right - left) / (s * u(0.11, 0.28))), 2, 8))
    pitch = (right - left) / cols
    xs = left + pitch * (np.arange(cols) + 0.5)
    ww, wh = min(pitch * u(0.35, 0.6), floor_h * u(0.35, 0.6)), floor_h * u(0.45, 0.66)
    band = max(1.0, s * u(0.01, 0.025))  # thickness of mouldings, sills and cornices
    odds = (0.6, 0.9, 0.6, 0.25, 0.5, 0.5, 0.3, 0.65)  # about as often as on the real facades
    moldings, sills, cornices, shutters, balconies, deco, pillars, shop = rng.random(8) < odds
    ground_top = s - ground
    if pillars:
        for x in np.concatenate([[left], (xs[1:] + xs[:-1]) / 2, [right]]):
            c.paint(PILLAR, top + floor_h * (rng.random() < 0.5), ground_top, x - band, x + band)
    for k in range(floors + 1):
        if moldings or k in (0, floors):
            y = top + k * floor_h
            c.paint(MOLDING, y - band * (k > 0), y + band * (k == 0), left, right)
    for k in range(floors):
        y0 = top + k * floor_h + floor_h * u(0.15, 0.25)
        y1 = y0 + wh
        balcony = balconies and rng.random() < 0.6
        for x in xs:
            if rng.random() < 0.04:  # the odd blind wall keeps the grid from being perfect
                continue
            if cornices:
                c.paint(CORNICE, y0 - band - 1, y0 - 1, x - ww * 0.65, x + ww * 0.65)
                if deco and k == 0:
                    c.paint(DECO, y0 - 3 * band - 1, y0 - band - 1, x - ww / 4, x + ww / 4)
            c.paint(WINDOW, y0, y1, x - ww / 2, x + ww / 2)
            if shutters:
                c.paint(BLIND, y0, y1, x - ww, x - ww / 2)
                c.paint(BLIND, y0, y1, x + ww / 2, x + ww)
            elif rng.random() < 0.2:
                c.paint(BLIND, y0, y0 + wh * u(0.1, 0.6), x - ww / 2, x + ww / 2)
            if balcony:
                c.paint(BALCONY, y1 - wh * 0.3, y1 + band, x - ww * 0.7, x + ww * 0.7)
            elif sills:
                c.paint(SILL, y1, y1 + band, x - ww * 0.6, x + ww * 0.6)
    door = int(rng.integers(cols))
    for k, x in enumerate(xs):
        if k == door:
            c.paint(DOOR, s - ground * u(0.6, 0.85), s, x - pitch * 0.2, x + pitch * 0.2)
        elif shop:
            c.paint(SHOP, ground_top + ground * u(0.12, 0.25), s, x - pitch * 0.4, x + pitch * 0.4)
        else:
            c.paint(WINDOW, ground_top + ground * 0.25, s - ground * 0.25, x - ww / 2, x + ww / 2)
    return c, int(round(top))


def _noise(rng, size, cells):
    """A smooth random field of about unit variance, `(size, size)`."""
    grid = Image.fromarray(rng.standard_normal((cells, cells)).astype(np.float32), mode="F")
    return np.asarray(grid.resize((size, size), Image.Resampling.BICUBIC))


def _shift(mask, dy, dx):
    """`mask` moved `dy` rows down and `dx` columns right, filled with False."""
    h, w = mask.shape
    out = np.zeros_like(mask)
    source = mask[max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)]
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = source
    return out


def _render(rng, c, top):
    """Draws the photo of a layout: materials, light, shadows, then the camera."""
    s, cls, v, u = c.size, c.cls, c.v[..., None], rng.uniform

    def colour(rgb, spread):
        return np.clip(np.asarray(rgb, np.float32) + u(-spread, spread, 3), 0, 255)

    wall = colour(_WALLS[rng.integers(len(_WALLS))], 12)
    stone = 0.4 * wall + 0.6 * colour((228, 222, 208), 12)
    base = np.array(
        [colour((85, 85, 88), 12), wall, colour((40, 46, 58), 10),
         colour(_DOORS[rng.integers(len(_DOORS))], 15), stone, stone,
         colour((45, 45, 50), 10) if rng.random() < 0.6 else stone,
         colour(_SHUTTERS[rng.integers(len(_SHUTTERS))], 15), stone, 0.95 * stone, 0.8 * stone,
         colour((120, 100, 80), 30)]
    )  # fmt: skip
    photo = base[cls] * (1 + 0.05 * _noise(rng, s, 4) + 0.03 * _noise(rng, s, 16))[..., None]
    sheen = (1 - v) ** 2.5  # the sky's reflection, bright at the top of the pane
    glass = colour((140, 160, 185), 25) * sheen + base[WINDOW] * (1 - sheen)
    photo = np.where((cls == WINDOW)[..., None], glass, photo)
    stone_shade = np.where(v < 0.3, 1.12, np.where(v > 0.7, 0.7, 0.97))  # lit top, dark underside
    photo *= np.where(np.isin(cls, (CORNICE, SILL, MOLDING, DECO))[..., None], stone_shade, 1)
    slats = np.arange(s)[:, None, None] % max(2, s // 64) == 0
    photo *= np.where(((cls == BLIND)[..., None] & slats), 0.7, 1)
    photo = np.where(((cls == SHOP)[..., None] & (v < 0.15)), colour((150, 150, 150), 90), photo)
    # Window and door frames (from 128 px on; smaller windows would be all frame).
    frame = s // 128
    frames = ((WINDOW, colour((235, 232, 225), 20)), (DOOR, 0.8 * base[DOOR])) if frame else ()
    for cls_id, rgb in frames:
        inside = cls == cls_id
        inner = inside.copy()
        for dy, dx in ((frame, 0), (-frame, 0), (0, frame), (0, -frame)):
            inner &= _shift(inside, dy, dx)
        photo[inside & ~inner] = rgb
    # Sky above the facade, the street and a neighbour below and beside it.
    y = np.arange(s, dtype=np.float32)[:, None, None] / max(top, 1)
    sky = colour((85, 135, 205), 20) * (1 - np.clip(y, 0, 1)) + colour((200, 215, 230), 15) * y
    sky = sky + (245 - sky) * 0.25 * np.maximum(_noise(rng, s, 5), 0)[..., None]
    photo = np.where(((cls == BACKGROUND) & (y[..., 0] < 1))[..., None], sky, photo)
    # Sunlight: a ramp across the facade and shadows below what sticks out.
    sun = 1.0 if rng.random() < 0.5 else -1.0
    x = np.arange(s, dtype=np.float32)[None, :] / s
    light = 1 + u(0.05, 0.25) * sun * (0.5 - x)
    casters, shadow = np.isin(cls, _CASTERS), np.ones((s, s), np.float32)
    for k in range(1, max(1, round(s * 0.012)) + 1):
        shadow[_shift(casters, k, round(-sun * k / 2)) & ~casters & (cls != BACKGROUND)] = 0.65
    photo *= np.where(cls != BACKGROUND, light * shadow, 1)[..., None]
    # Camera: exposure, white balance, sensor noise.
    photo = photo * u(0.85, 1.1) * rng.normal(1.0, 0.03, 3)
    photo += u(1.5, 4.0) * rng.standard_normal(photo.shape)
    return np.clip(np.rint(photo), 0, 255).astype(np.uint8)


def labels_to_rgb(classes) -> np.ndarray:
    """Colours a map of CMP class indices `(H, W)` with `CMP_PALETTE`, as uint8 `(H, W, 3)`."""
    return PALETTE_ARRAY[np.asarray(classes)]


def render_pair(rng, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Renders one synthetic facade: `(photo, label)`, uint8 `(size, size, 3)`, `size >= 32`.

    `rng` is a `numpy.random.Generator` or a seed; every label pixel is one `CMP_PALETTE` colour.
    """
    if size < 32:
        raise ValueError(f"size must be at least 32, got {size}")
    rng = np.random.default_rng(rng)
    canvas, top = _layout(rng, int(size))
    return _render(rng, canvas, top), labels_to_rgb(canvas.cls)


def make_synthetic_facades(
    out_dir=None, *, train=400, val=100, test=100, seed=0, size=256, overwrite=False
) -> Path:
    """Writes `out_dir/{train,val,test}/<i>.jpg` (i from 1) unless up to date; returns `out_dir`.

    `out_dir` defaults to `data/synthetic_facades`; the parameters go to `synthetic.json`. Image
    `i` of a split depends only on `(seed, split, i)`. The folder appears in one rename; a
    non-empty one without `synthetic.json` (real data, say) raises `FileExistsError`.

    >>> root = make_synthetic_facades("/tmp/facades_demo", train=4, val=2, test=2, size=64)
    """
    out = Path(out_dir or project_dir() / "data" / "synthetic_facades")
    counts = dict(zip(SPLITS, (train, val, test), strict=True))
    for name, value in [*counts.items(), ("seed", seed)]:
        if isinstance(value, bool) or int(value) != value or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if isinstance(size, bool) or int(size) != size or size < 32:
        raise ValueError(f"size must be an integer of at least 32, got {size!r}")
    params = {"generator": __name__, "version": GENERATOR_VERSION, "seed": int(seed),
              "size": int(size), "counts": {k: int(n) for k, n in counts.items()},
              "layout": "AB: photo (A) left, CMP label map (B) right"}  # fmt: skip
    manifest = out / MANIFEST_NAME
    try:
        previous = json.loads(manifest.read_text()) if manifest.is_file() else None
    except ValueError:
        previous = {}  # ours, but damaged: redraw
    if previous == params and not overwrite:
        return out
    if previous is None and out.is_dir() and any(out.iterdir()):
        raise FileExistsError(
            f"{out} is not empty and has no {MANIFEST_NAME}: refusing to write synthetic data "
            "into it; choose another folder."
        )
    with atomic_path(out) as tmp:
        for split_index, split in enumerate(SPLITS):
            (tmp / split).mkdir(parents=True)
            for i in range(1, params["counts"][split] + 1):
                pair = render_pair(np.random.default_rng([seed, split_index, i - 1]), size)
                image = Image.fromarray(np.concatenate(pair, axis=1))
                image.save(tmp / split / f"{i}.jpg", quality=95, subsampling="4:4:4")
        (tmp / MANIFEST_NAME).write_text(json.dumps(params, indent=2, sort_keys=True) + "\n")
    return out
