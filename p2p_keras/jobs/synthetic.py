"""Procedurally generated "synthetic facades": a pix2pix dataset that needs no download.

Every pair is a CMP-style colour label map (the 12-class palette of the CMP Facade Database, the
source of the pix2pix `facades` split) and a rendered "photo" of the same layout. The photo is a
deterministic function of the layout plus a few per-image style choices (wall colour, brick or
plaster, shutter colour, lighting, noise), so labels -> photo is learnable in the same way as the
real facades task, at a fraction of its difficulty.

Files follow the aligned pix2pix layout of the real data: `out_dir/{train,val,test}/<i>.jpg`
(i = 1..N), each `size x 2*size` with the photo (A) on the LEFT and the label map (B) on the
RIGHT, so the natural direction is "BtoA".
"""

from __future__ import annotations

import json
import os
import pathlib
import re
from types import SimpleNamespace

import numpy as np
from PIL import Image

# Label colours of the pix2pix `facades` label maps, measured from the real data as the dominant
# colour clusters of flat label regions (they are samples of a jet-like colormap, in class-index
# order of the CMP Facade Database). Background is the dark blue.
CMP_PALETTE = (
    ("background", (0, 0, 222)),
    ("facade", (0, 48, 255)),
    ("window", (0, 128, 255)),
    ("door", (0, 207, 255)),
    ("cornice", (32, 255, 224)),
    ("sill", (112, 254, 142)),
    ("balcony", (192, 255, 63)),
    ("blind", (255, 240, 1)),
    ("deco", (255, 159, 0)),
    ("molding", (255, 80, 0)),
    ("pillar", (254, 0, 0)),
    ("shop", (174, 0, 0)),
)
CLASS_NAMES = tuple(name for name, _ in CMP_PALETTE)
PALETTE_ARRAY = np.array([rgb for _, rgb in CMP_PALETTE], dtype=np.uint8)

(
    _BACKGROUND,
    _FACADE,
    _WINDOW,
    _DOOR,
    _CORNICE,
    _SILL,
    _BALCONY,
    _BLIND,
    _DECO,
    _MOLDING,
    _PILLAR,
    _SHOP,
) = range(len(CMP_PALETTE))

SPLITS = ("train", "val", "test")
MANIFEST_NAME = "synthetic.json"
# Bump whenever the rendering changes, so cached folders from an older generator are regenerated.
GENERATOR_VERSION = 1
_JPEG_QUALITY = 95
_NUMBERED_JPEG = re.compile(r"^([1-9][0-9]*)\.jpg$")

_WALL_COLOURS = (
    (222, 210, 185),  # cream
    (205, 180, 130),  # ochre
    (230, 220, 160),  # pale yellow
    (190, 190, 185),  # grey plaster
    (215, 190, 170),  # salmon
    (175, 195, 170),  # pale green
    (235, 232, 225),  # white
)
_BRICK_COLOURS = ((150, 75, 55), (170, 100, 70), (120, 65, 50), (190, 150, 110))
_FRAME_COLOURS = ((238, 236, 230), (80, 55, 40), (125, 125, 120), (40, 60, 45))
_DOOR_COLOURS = ((105, 65, 38), (72, 48, 32), (55, 70, 58), (120, 40, 35), (60, 60, 65))
_SHUTTER_COLOURS = ((60, 105, 70), (115, 75, 45), (150, 150, 140), (220, 218, 205), (70, 90, 120))
_ROOF_COLOURS = ((70, 75, 85), (150, 72, 52), (110, 60, 50), (95, 95, 98))
_STONE_WHITE = np.array((228, 222, 208), np.float32)
_CASTERS = (_CORNICE, _SILL, _MOLDING, _BALCONY, _DECO)


class _Canvas:
    """Label map under construction, plus per-pixel coordinates local to the rectangle on top."""

    def __init__(self, size):
        self.size = size
        shape = (size, size)
        self.cls = np.full(shape, _BACKGROUND, np.int8)
        self.u = np.zeros(shape, np.float32)  # 0..1 across the rectangle
        self.v = np.zeros(shape, np.float32)  # 0..1 down the rectangle
        self.rw = np.ones(shape, np.float32)  # rectangle width in pixels
        self.rh = np.ones(shape, np.float32)  # rectangle height in pixels
        self.edge = np.zeros(shape, np.float32)  # distance to the rectangle border in pixels
        self.inst = np.zeros(shape, np.int32)
        self.count = 0

    def paint(self, cls, y0, y1, x0, x1):
        """Paints the rectangle [y0, y1) x [x0, x1) (clipped to the canvas) with class `cls`."""
        y0, y1, x0, x1 = (int(round(t)) for t in (y0, y1, x0, x1))
        cy0, cy1 = max(y0, 0), min(y1, self.size)
        cx0, cx1 = max(x0, 0), min(x1, self.size)
        if cy1 <= cy0 or cx1 <= cx0:
            return
        h, w = y1 - y0, x1 - x0
        ys = np.arange(cy0, cy1, dtype=np.float32) - y0
        xs = np.arange(cx0, cx1, dtype=np.float32) - x0
        region = (slice(cy0, cy1), slice(cx0, cx1))
        self.count += 1
        self.cls[region] = cls
        self.v[region] = ((ys + 0.5) / h)[:, None]
        self.u[region] = ((xs + 0.5) / w)[None, :]
        self.rh[region] = h
        self.rw[region] = w
        self.edge[region] = np.minimum(
            np.minimum(ys, h - 1 - ys)[:, None], np.minimum(xs, w - 1 - xs)[None, :]
        )
        self.inst[region] = self.count


def _choice(rng, options):
    return np.asarray(options[int(rng.integers(len(options)))], np.float32)


def _jitter(rng, rgb, amount):
    return np.clip(rgb + rng.uniform(-amount, amount, 3), 0, 255).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------------


def _facade_box(rng, s):
    top = s * rng.uniform(0.02, 0.22)
    bottom = s - s * rng.uniform(0.0, 0.07)
    left = s * rng.uniform(0.02, 0.12) if rng.random() < 0.35 else 0.0
    right = s - (s * rng.uniform(0.02, 0.12) if rng.random() < 0.35 else 0.0)
    return top, bottom, left, right


def _column_centres(rng, left, right, s):
    width = right - left
    n_cols = int(np.clip(round(width / (s * rng.uniform(0.11, 0.28))), 2, 8))
    pitch = width / n_cols
    centres = left + pitch * (np.arange(n_cols) + 0.5)
    if n_cols % 2 == 0 and rng.random() < 0.25:
        # Windows grouped in pairs, a common rhythm on real facades.
        shift = pitch * rng.uniform(0.08, 0.2)
        centres = centres + np.where(np.arange(n_cols) % 2 == 0, shift, -shift)
    return centres, pitch


def _style(rng, s, pitch, floor_h):
    """Per-building choices of which architectural elements appear and how big they are.

    The probabilities roughly follow how often each class appears in the real facades.
    """
    wh = floor_h * rng.uniform(0.45, 0.66)
    # Mostly portrait windows, as on the (mainly European) CMP facades.
    ww = min(pitch * rng.uniform(0.35, 0.6), wh * rng.uniform(0.55, 1.0))
    shutters = rng.random() < 0.25
    if shutters:
        ww = min(ww, pitch * 0.45)
    return {
        "ww": ww,
        "wh": wh,
        "w_top": floor_h * rng.uniform(0.14, 0.26),
        "floor_moldings": rng.random() < 0.5,
        "roof_molding": rng.random() < 0.65,
        "ground_molding": rng.random() < 0.6,
        "molding_t": max(1.0, s * rng.uniform(0.01, 0.025)),
        "sills": rng.random() < 0.92,
        "sill_t": max(1.0, s * rng.uniform(0.008, 0.016)),
        "sill_ext": ww * rng.uniform(0.05, 0.2),
        "cornices": rng.random() < 0.65,
        "cornice_t": max(1.0, s * rng.uniform(0.01, 0.025)),
        "shutters": shutters,
        "shutter_w": ww * rng.uniform(0.4, 0.5),
        "rolled_blinds": (not shutters) and rng.random() < 0.35,
        "balconies": rng.random() < 0.55,
        "balcony_full_width": rng.random() < 0.35,
        "deco": rng.random() < 0.55,
        "pillars": rng.random() < 0.3,
        "shop": rng.random() < 0.7,
    }


def _paint_floor_windows(rng, c, st, centres, floor_top, floor_h, balcony, top_floor):
    s = c.size
    ww, wh = st["ww"], st["wh"]
    w_top = floor_top + st["w_top"]
    w_bottom = floor_top + floor_h - st["molding_t"] - 1 if balcony else w_top + wh
    for cx in centres:
        if rng.random() < 0.04:  # the odd blind wall keeps grids from being perfect
            continue
        x0, x1 = cx - ww / 2, cx + ww / 2
        c.paint(_WINDOW, w_top, w_bottom, x0, x1)
        if st["shutters"]:
            c.paint(_BLIND, w_top, w_bottom, x0 - st["shutter_w"], x0)
            c.paint(_BLIND, w_top, w_bottom, x1, x1 + st["shutter_w"])
        elif st["rolled_blinds"] and rng.random() < 0.6:
            c.paint(_BLIND, w_top, w_top + (w_bottom - w_top) * rng.uniform(0.1, 0.7), x0, x1)
        if st["sills"] and not balcony:
            ext = st["sill_ext"]
            c.paint(_SILL, w_bottom, w_bottom + st["sill_t"], x0 - ext, x1 + ext)
        if st["cornices"]:
            ext = st["sill_ext"] * 1.5
            c.paint(_CORNICE, w_top - st["cornice_t"] - 1, w_top - 1, x0 - ext, x1 + ext)
            if st["deco"] and top_floor:
                dw, dh = ww * 0.5, max(2.0, s * 0.03)
                top = w_top - st["cornice_t"] - 1 - dh
                c.paint(_DECO, top, top + dh, cx - dw / 2, cx + dw / 2)
        if balcony and not st["balcony_full_width"]:
            ext = ww * 0.25
            rail = (w_bottom - w_top) * rng.uniform(0.25, 0.35)
            c.paint(_BALCONY, w_bottom - rail, w_bottom + st["molding_t"] + 1, x0 - ext, x1 + ext)


def _paint_ground_floor(rng, c, st, centres, pitch, top, bottom):
    height = bottom - top
    door_col = int(rng.integers(len(centres)))
    if rng.random() < 0.4:
        door_col = len(centres) // 2
    for k, cx in enumerate(centres):
        if k == door_col:
            continue
        if st["shop"]:
            half = pitch * rng.uniform(0.3, 0.43)
            c.paint(_SHOP, top + height * rng.uniform(0.12, 0.25), bottom, cx - half, cx + half)
        else:
            ww = st["ww"]
            wy = top + height * 0.25
            c.paint(_WINDOW, wy, wy + height * 0.5, cx - ww / 2, cx + ww / 2)
            if st["sills"]:
                ext = st["sill_ext"]
                y = wy + height * 0.5
                c.paint(_SILL, y, y + st["sill_t"], cx - ww / 2 - ext, cx + ww / 2 + ext)
    half = pitch * rng.uniform(0.16, 0.26)
    cx = centres[door_col]
    c.paint(_DOOR, bottom - height * rng.uniform(0.6, 0.85), bottom, cx - half, cx + half)


def _layout(rng, s):
    """Builds a random facade layout; returns the canvas and the geometry the renderer needs."""
    c = _Canvas(s)
    top, bottom, left, right = _facade_box(rng, s)
    c.paint(_FACADE, top, bottom, left, right)
    height = bottom - top
    ground = height * rng.uniform(0.17, 0.27)
    n_floors = int(np.clip(round((height - ground) / (s * rng.uniform(0.13, 0.2))), 2, 6))
    floor_h = (height - ground) / n_floors
    centres, pitch = _column_centres(rng, left, right, s)
    st = _style(rng, s, pitch, floor_h)
    ground_top = bottom - ground

    if st["pillars"]:
        gap = pitch - st["ww"] - (2 * st["shutter_w"] if st["shutters"] else 0.0)
        half = max(1.0, gap * rng.uniform(0.15, 0.3))
        span_top = top + (floor_h if rng.random() < 0.5 else 0.0)
        for x in np.concatenate([[left + half], (centres[1:] + centres[:-1]) / 2, [right - half]]):
            c.paint(_PILLAR, span_top, ground_top, x - half, x + half)

    mt = st["molding_t"]
    if st["floor_moldings"]:
        for k in range(1, n_floors):
            y = top + k * floor_h
            c.paint(_MOLDING, y - mt, y, left, right)
    if st["ground_molding"]:
        c.paint(_MOLDING, ground_top - mt * 1.5, ground_top, left, right)
    if st["roof_molding"]:
        c.paint(_MOLDING, top, top + mt * 1.8, left, right)
        if st["deco"] and not st["cornices"]:
            dh = max(2.0, s * 0.025)
            for x in np.linspace(left, right, int(rng.integers(6, 14)))[1:-1]:
                c.paint(_DECO, top + mt * 1.8, top + mt * 1.8 + dh, x - dh / 2, x + dh / 2)

    if st["balconies"]:
        balcony_floors = rng.random(n_floors) < 0.6
        balcony_floors[int(rng.integers(n_floors))] = True
    else:
        balcony_floors = np.zeros(n_floors, bool)
    for k in range(n_floors):
        floor_top = top + k * floor_h
        _paint_floor_windows(
            rng, c, st, centres, floor_top, floor_h, balcony_floors[k], top_floor=k == 0
        )
        if balcony_floors[k] and st["balcony_full_width"]:
            y = floor_top + floor_h
            rail = floor_h * rng.uniform(0.15, 0.22)
            c.paint(_BALCONY, y - rail, y + 1, left + pitch * 0.1, right - pitch * 0.1)

    _paint_ground_floor(rng, c, st, centres, pitch, ground_top, bottom)
    box = {"top": top, "bottom": bottom, "left": left, "right": right}
    return c, {name: int(round(value)) for name, value in box.items()}


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


class _Noise:
    """A smooth random field over the (size, size) canvas, roughly unit variance.

    Smoothstep interpolation of a random lattice, computed on first use.
    """

    def __init__(self, rng, size, cells_y, cells_x=None):
        cells_x = cells_y if cells_x is None else cells_x
        # Drawn now, so the random stream does not depend on which fields get used.
        self.grid = rng.standard_normal((cells_y + 1, cells_x + 1), dtype=np.float32)
        self.size = size
        self._field = None

    def __call__(self, p):
        if self._field is None:
            cells_y, cells_x = self.grid.shape[0] - 1, self.grid.shape[1] - 1
            rows = np.einsum("yk,kx->yx", _interpolation_matrix(self.size, cells_y), self.grid)
            # einsum rather than `@`: waking BLAS threads for small products costs milliseconds.
            field = np.einsum("yk,xk->yx", rows, _interpolation_matrix(self.size, cells_x))
            self._field = field.ravel()
        return self._field[p.index]


def _interpolation_matrix(size, cells):
    """(size, cells + 1) weights that smoothstep-interpolate `cells + 1` lattice values."""
    t = (np.arange(size, dtype=np.float32) + 0.5) * np.float32(cells / size)
    i = np.minimum(t.astype(np.int64), cells - 1)
    f = t - i
    f = f * f * (3 - 2 * f)
    weights = np.zeros((size, cells + 1), np.float32)
    weights[np.arange(size), i] = 1 - f
    weights[np.arange(size), i + 1] = f
    return weights


class _Pixels:
    """The pixels of one class, flattened, with their canvas attributes."""

    def __init__(self, canvas, mask):
        s = canvas.size
        self.index = np.flatnonzero(mask)
        self.n = self.index.size
        self.y = (self.index // s).astype(np.float32)
        self.x = (self.index % s).astype(np.float32)
        for name in ("u", "v", "rw", "rh", "edge", "inst"):
            setattr(self, name, getattr(canvas, name).ravel()[self.index])


def _photo_style(rng, s, count):
    """Per-image material and lighting choices shared by all layers."""
    st = SimpleNamespace(s=s, ldir=1.0 if rng.random() < 0.5 else -1.0)  # +1: sun from the left
    st.frame = _jitter(rng, _choice(rng, _FRAME_COLOURS), 10)
    st.wall_low, st.wall_mid, st.streaks = (
        _Noise(rng, s, 3),
        _Noise(rng, s, 12),
        _Noise(rng, s, 2, 24),
    )
    st.brick = None
    if rng.random() < 0.3:
        st.wall = _jitter(rng, _choice(rng, _BRICK_COLOURS), 15)
        h = max(2.0, s * rng.uniform(0.012, 0.02))
        w = h * rng.uniform(2.0, 3.0)
        tone = rng.uniform(0.82, 1.12, (int(s // h) + 2, int(s // w) + 3)).astype(np.float32)
        st.brick = SimpleNamespace(h=h, w=w, tone=tone, mortar=0.75 * _STONE_WHITE)
    else:
        st.wall = _jitter(rng, _choice(rng, _WALL_COLOURS), 12)
    mix = rng.uniform(0.4, 0.85)
    st.stone = st.wall * (1 - mix) + _jitter(rng, _STONE_WHITE, 12) * mix
    st.stone_noise = _Noise(rng, s, 10)
    st.glass_top = _jitter(rng, (150, 168, 190), 25)
    st.glass_bottom = _jitter(rng, (38, 44, 55), 12)
    st.window_gain = rng.uniform(0.7, 1.3, count + 1).astype(np.float32)
    st.curtains = rng.random(count + 1) < 0.2
    st.door = _jitter(rng, _choice(rng, _DOOR_COLOURS), 15)
    st.grain = _Noise(rng, s, 2, max(8, s // 4))
    st.shutter = _jitter(rng, _choice(rng, _SHUTTER_COLOURS), 15)
    st.iron_railing = rng.random() < 0.6
    st.baluster_pitch = max(3.0, s / rng.uniform(35, 60))
    st.shop_interior = [_Noise(rng, s, 8) for _ in range(3)]
    st.shop_sign = rng.uniform(40, 230, 3).astype(np.float32) if rng.random() < 0.5 else None
    st.shop_frame = _jitter(rng, (60, 60, 62), 15)
    return st


def _wall_rgb(rng, st, p):
    shade = 1 + 0.05 * st.wall_low(p) + 0.03 * st.wall_mid(p)
    shade = shade + 0.025 * rng.standard_normal(p.n, dtype=np.float32)
    if st.brick is None:
        shade = shade - 0.05 * np.maximum(st.streaks(p), 0)  # rain-washed dirt
        return st.wall * shade[:, None]
    b = st.brick
    row = (p.y // b.h).astype(np.int64)
    offset = (row % 2) * (b.w / 2)
    col = ((p.x + offset) // b.w).astype(np.int64)
    rgb = st.wall * (b.tone[row, col] * shade)[:, None]
    mortar = ((p.y % b.h) < 1.0) | (((p.x + offset) % b.w) < 1.0)
    rgb[mortar] = b.mortar
    return rgb


def _stone_rgb(rng, st, p, shade):
    texture = 1 + 0.04 * st.stone_noise(p) + 0.03 * rng.standard_normal(p.n, dtype=np.float32)
    return st.stone * (shade * texture)[:, None]


def _background_rgb(rng, st, p):
    """Sky above the facade, a neighbouring building beside it and the street below it."""
    s, box = st.s, st.box
    if rng.random() < 0.6:
        zenith, horizon = _jitter(rng, (85, 135, 205), 20), _jitter(rng, (185, 205, 228), 15)
    else:  # overcast
        zenith, horizon = _jitter(rng, (165, 170, 180), 20), _jitter(rng, (215, 215, 218), 10)
    t = np.clip(p.y / max(box["top"], 1.0), 0, 1)[:, None]
    clouds = 0.25 * np.maximum(_Noise(rng, s, 4, 6)(p), 0)[:, None]
    sky = zenith * (1 - t) + horizon * t
    sky = sky + (245 - sky) * clouds
    neighbour = _jitter(rng, (150, 145, 138), 35) * (0.75 + 0.06 * _Noise(rng, s, 6)(p))[:, None]
    street = (
        _jitter(rng, (85, 85, 88), 12)
        * (1 + 0.08 * rng.standard_normal(p.n, dtype=np.float32))[:, None]
    )
    rgb = np.where((p.y >= box["bottom"])[:, None], street, neighbour)
    rgb = np.where((p.y < box["top"])[:, None], sky, rgb)
    # Light from the sky makes the neighbour a touch darker the lower it is.
    rgb = rgb * (1 - 0.1 * (p.y / s) * (p.y >= box["top"]))[:, None]
    if rng.random() < 0.45:
        rgb = _add_roof(rng, st, p, rgb)
    return rgb


def _add_roof(rng, st, p, rgb):
    """A tiled roof above the facade (labelled background in CMP, like the sky)."""
    box = st.box
    height = min(box["top"], st.s * rng.uniform(0.04, 0.1))
    tiles = _jitter(rng, _choice(rng, _ROOF_COLOURS), 15)
    course = max(2.0, st.s / 80)
    depth = np.clip((p.y - (box["top"] - height)) / max(height, 1.0), 0, 1)
    shade = (0.75 + 0.3 * depth) * np.where((p.y % course) < 1, 0.75, 1.0)
    roof = (p.y >= box["top"] - height) & (p.y < box["top"])
    roof &= (p.x >= box["left"]) & (p.x < box["right"])
    return np.where(roof[:, None], tiles * shade[:, None], rgb)


def _window_rgb(rng, st, p):
    v, u = p.v[:, None], p.u[:, None]
    reflection = (1 - v) ** 1.6
    glass = st.glass_top * reflection + st.glass_bottom * (1 - reflection)
    glint = 0.5 + 0.5 * np.sin((u * 1.7 + v) * (2 * np.pi))
    glass = glass * (0.85 + 0.3 * glint) * st.window_gain[p.inst][:, None]
    glass = np.where(st.curtains[p.inst][:, None], 0.5 * glass + 85, glass)
    # The window reveal shades the glass near its top edge and on the side facing the sun.
    depth = max(1.0, st.s * 0.012)
    lit_side = np.where(st.ldir > 0, p.u, 1 - p.u) * p.rw
    reveal = 1 - 0.45 * np.exp(-(p.v * p.rh) / depth) - 0.3 * np.exp(-lit_side / depth)
    glass = glass * reveal[:, None]
    fw = max(1.0, st.s / 128)
    mullion = (np.abs(p.u - 0.5) * p.rw < fw / 2 + 0.5) | (np.abs(p.v - 0.3) * p.rh < fw / 2)
    return np.where(((p.edge < fw) | mullion)[:, None], st.frame, glass)


def _door_rgb(rng, st, p):
    door = st.door * (1 + 0.1 * st.grain(p))[:, None]
    panel = (np.abs(p.u - 0.5) * p.rw < 1) | (np.abs(p.v - 0.55) * p.rh < 1)
    door = np.where(panel[:, None], 0.6 * door, door)
    glazed = (p.v < 0.3) & (p.edge > max(2.0, st.s / 64))
    door = np.where(glazed[:, None], 0.35 * door + 30, door)
    return np.where((p.edge < max(1.0, st.s / 128))[:, None], 0.8 * st.frame, door)


def _blind_rgb(rng, st, p):
    slat = max(2.0, st.s / 64)
    blind = st.shutter * (0.78 + 0.3 * ((p.y % slat) / slat))[:, None]
    return np.where((p.edge < max(1.0, st.s / 128))[:, None], 0.6 * st.shutter, blind)


def _balcony_rgb(rng, st, p):
    rail = (p.v * p.rh < max(1.0, st.s / 100)) | (p.v > 0.85) | (p.edge < 1)
    behind = 0.45 * _wall_rgb(rng, st, p)
    phase = (p.x % st.baluster_pitch) / st.baluster_pitch
    if st.iron_railing:
        return np.where((rail | (phase < 0.3))[:, None], _jitter(rng, (45, 45, 50), 10), behind)
    stone = _stone_rgb(rng, st, p, np.where(rail, 1.05, 0.6 + 0.5 * np.sin(np.pi * phase)))
    return np.where((rail | (phase > 0.15))[:, None], stone, behind)


def _shop_rgb(rng, st, p):
    colour = np.stack([noise(p) for noise in st.shop_interior], -1)
    v = p.v[:, None]
    shop = (np.float32(52) + 45 * colour) * (0.6 + 0.5 * v) + 70 * (1 - v) ** 3
    if st.shop_sign is not None:
        shop = np.where((p.v < 0.16)[:, None], st.shop_sign, shop)
    return np.where((p.edge < max(1.0, st.s / 100))[:, None], st.shop_frame, shop)


def _moulding_shade(st, p):
    """Horizontal mouldings: lit top face, darker underside."""
    middle = 0.97 - 0.05 * st.ldir * (p.u - 0.5)
    return np.where(p.v < 0.3, 1.12, np.where(p.v > 0.72, 0.68, middle))


def _cornice_rgb(rng, st, p):
    return _stone_rgb(rng, st, p, _moulding_shade(st, p))


def _molding_rgb(rng, st, p):
    return _stone_rgb(rng, st, p, 0.97 * _moulding_shade(st, p))


def _sill_rgb(rng, st, p):
    return _stone_rgb(rng, st, p, np.where(p.v > 0.6, 0.72, 1.1))


def _deco_rgb(rng, st, p):
    rosette = np.cos(6 * np.pi * np.hypot(p.u - 0.5, p.v - 0.5))
    return _stone_rgb(rng, st, p, 0.8 + 0.3 * rosette)


def _pillar_rgb(rng, st, p):
    # A sunlit cylinder: brightest off-centre, towards the sun.
    return _stone_rgb(rng, st, p, 0.62 + 0.5 * np.sin(np.pi * np.clip(p.u + 0.15 * st.ldir, 0, 1)))


_CLASS_RGB = {
    _BACKGROUND: _background_rgb,
    _FACADE: _wall_rgb,
    _WINDOW: _window_rgb,
    _DOOR: _door_rgb,
    _CORNICE: _cornice_rgb,
    _SILL: _sill_rgb,
    _BALCONY: _balcony_rgb,
    _BLIND: _blind_rgb,
    _DECO: _deco_rgb,
    _MOLDING: _molding_rgb,
    _PILLAR: _pillar_rgb,
    _SHOP: _shop_rgb,
}


def _shift_down(mask, dy, dx):
    """`mask` moved dy rows down and dx columns right, filling with False."""
    out = np.zeros_like(mask)
    h, w = mask.shape
    src = mask[: h - dy, max(-dx, 0) : w - max(dx, 0)]
    out[dy:, max(dx, 0) : w - max(-dx, 0)] = src
    return out


def _cast_shadows(c, ldir, strength, length):
    """Darkening factor for pixels just below (and away from the sun of) protruding elements."""
    casters = np.isin(c.cls, _CASTERS)
    receivers = ~casters & (c.cls != _BACKGROUND)
    shade = np.ones(c.cls.shape, np.float32)
    for k in range(1, length + 1):
        dx = int(round(-ldir * k * 0.5))
        hit = _shift_down(casters, k, dx) & receivers
        shade[hit] = np.minimum(shade[hit], 1 - strength * (1 - (k - 1) / length))
    return shade


def _render_photo(rng, c, box):
    s = c.size
    st = _photo_style(rng, s, c.count)
    st.box = box
    photo = np.zeros((s * s, 3), np.float32)
    for cls in range(len(CMP_PALETTE)):
        mask = c.cls == cls
        if mask.any():
            p = _Pixels(c, mask)
            photo[p.index] = _CLASS_RGB[cls](rng, st, p)
    photo = photo.reshape(s, s, 3)

    # Directional sun: a gentle ramp across the facade plus shadows under protruding elements.
    y = np.arange(s, dtype=np.float32)[:, None] / s
    x = np.arange(s, dtype=np.float32)[None, :] / s
    ramp = 1 + rng.uniform(0.05, 0.25) * st.ldir * (0.5 - x) + rng.uniform(0, 0.1) * (0.5 - y)
    shadow = _cast_shadows(c, st.ldir, rng.uniform(0.3, 0.5), max(1, int(round(s * 0.012))))
    photo *= np.where(c.cls != _BACKGROUND, ramp * shadow, np.float32(1))[..., None]

    # Camera: exposure, white balance, tone curve and sensor noise.
    gain = rng.uniform(0.82, 1.12) * rng.normal(1.0, 0.035, 3).astype(np.float32)
    levels = np.rint(np.clip(photo * gain, 0, 255)).astype(np.uint8)
    tone_curve = 255 * (np.arange(256, dtype=np.float32) / 255) ** rng.uniform(0.85, 1.15)
    photo = tone_curve[levels]
    photo += rng.uniform(1.5, 5.0) * rng.standard_normal(photo.shape, dtype=np.float32)
    return np.clip(np.rint(photo), 0, 255).astype(np.uint8)


def labels_to_rgb(classes) -> np.ndarray:
    """Colours a map of CMP class indices with `CMP_PALETTE`.

    Args:
        classes: integer array of shape (H, W) with values in `[0, 12)`.

    Returns:
        uint8 array of shape (H, W, 3).

    Example:

    >>> labels_to_rgb(np.zeros((2, 2), int))[0, 0].tolist()
    [0, 0, 222]
    """
    return PALETTE_ARRAY[np.asarray(classes)]


def render_pair(rng, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Renders one synthetic facade: a photo and its pixel-aligned CMP label map.

    Args:
        rng: a `numpy.random.Generator` (or anything `numpy.random.default_rng` accepts, such
            as an int seed). All randomness of the pair comes from it.
        size: height and width of both images in pixels (at least 32).

    Returns:
        `(photo, label)`, two uint8 arrays of shape (size, size, 3). Every label pixel is
        exactly one of the `CMP_PALETTE` colours.

    Example:

    >>> photo, label = render_pair(np.random.default_rng(0), size=64)
    >>> photo.shape, label.shape
    ((64, 64, 3), (64, 64, 3))
    """
    if size < 32:
        raise ValueError(f"size must be at least 32, got {size}")
    rng = np.random.default_rng(rng)
    canvas, box = _layout(rng, int(size))
    photo = _render_photo(rng, canvas, box)
    return photo, labels_to_rgb(canvas.cls)


# --------------------------------------------------------------------------------------------
# Dataset on disk
# --------------------------------------------------------------------------------------------


def _numbered_jpegs(folder):
    """Maps index -> path for the `<i>.jpg` files of a split folder."""
    if not folder.is_dir():
        return {}
    found = {}
    for path in folder.iterdir():
        match = _NUMBERED_JPEG.match(path.name)
        if match and path.is_file():
            found[int(match.group(1))] = path
    return found


def _read_manifest(out):
    """The recorded parameters (with their "complete" flag), or None if there are none."""
    try:
        manifest = json.loads((out / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _is_complete(out, params):
    if _read_manifest(out) != {**params, "complete": True}:
        return False
    return all(
        set(_numbered_jpegs(out / split)) == set(range(1, params["counts"][split] + 1))
        for split in SPLITS
    )


def _same_images(previous, params):
    """Whether images recorded by `previous` are the ones `params` asks for (counts aside)."""
    ignored = ("counts", "complete")
    return previous is not None and {k: v for k, v in previous.items() if k not in ignored} == {
        k: v for k, v in params.items() if k not in ignored
    }


def _write_manifest(out, params, complete):
    text = json.dumps({**params, "complete": complete}, indent=2, sort_keys=True) + "\n"
    _write_atomic(out / MANIFEST_NAME, lambda tmp: tmp.write_text(text))


def _write_atomic(path, write):
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_pair(path, photo, label):
    image = Image.fromarray(np.concatenate([photo, label], axis=1))
    # 4:4:4 chroma: with the default 4:2:0 (which the real facades use) JPEG smears the
    # saturated label colours into each other, e.g. half the pixels of a 64 px map end up
    # more than 40 levels off their palette colour.
    _write_atomic(
        path,
        lambda tmp: image.save(tmp, format="JPEG", quality=_JPEG_QUALITY, subsampling="4:4:4"),
    )


def _check_count(name, value):
    if isinstance(value, bool) or int(value) != value or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def make_synthetic_facades(
    out_dir="data/synthetic_facades",
    *,
    train=400,
    val=100,
    test=100,
    seed=0,
    size=256,
    overwrite=False,
) -> pathlib.Path:
    """Writes the synthetic facades dataset in the aligned pix2pix layout (idempotent).

    Creates `out_dir/{train,val,test}/<i>.jpg` (i = 1..N), each a `size x 2*size` JPEG
    (quality 95, 4:4:4 chroma so label colours stay crisp) with the rendered photo (A) on the
    left and the CMP colour label map (B) on the right, like the real `facades` data: train with
    direction "BtoA" for labels -> photo. Image `i` of a split depends only on
    `(seed, split, i)`, so datasets of different sizes share their first images.

    The parameters are recorded in `out_dir/synthetic.json`. When the folder already holds the
    requested images for the same parameters nothing is written; when the parameters differ
    the folder is brought up to date (images of the same seed and size are kept, stale ones
    deleted). Files are written atomically, so an interrupted run is simply resumed. A folder
    holding other files but no `synthetic.json` (real data, say) is never written into unless
    `overwrite=True`, and even then only its `<split>/<i>.jpg` files are replaced.

    Args:
        out_dir: destination folder.
        train: number of training pairs.
        val: number of validation pairs.
        test: number of test pairs.
        seed: integer seed; the same seed gives byte-identical files.
        size: height of each image and width of each half, in pixels (at least 32).
        overwrite: regenerate every image even when the folder is up to date.

    Returns:
        `pathlib.Path` of `out_dir`.

    Raises:
        ValueError: for a negative or non-integer count or seed, or a size below 32.
        FileExistsError: if `out_dir` is a non-empty folder that was not written by this
            function (so real data is never overwritten) and `overwrite` is False.

    Example:

    >>> root = make_synthetic_facades("/tmp/facades_demo", train=4, val=2, test=2, size=64)
    >>> sorted(p.name for p in (root / "train").iterdir())
    ['1.jpg', '2.jpg', '3.jpg', '4.jpg']
    """
    out = pathlib.Path(out_dir)
    counts = {
        name: _check_count(name, n) for name, n in zip(SPLITS, (train, val, test), strict=True)
    }
    if int(size) != size or size < 32:
        raise ValueError(f"size must be an integer of at least 32, got {size!r}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    params = {
        "generator": "p2p_keras.jobs.synthetic",
        "version": GENERATOR_VERSION,
        "seed": int(seed),
        "size": int(size),
        "jpeg_quality": _JPEG_QUALITY,
        "jpeg_subsampling": "4:4:4",
        "counts": counts,
        "layout": "AB: photo (A) left, CMP label map (B) right",
    }
    if not overwrite and _is_complete(out, params):
        return out

    previous = _read_manifest(out)
    if previous is None and out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{out} is not empty and has no {MANIFEST_NAME}; refusing to write synthetic data "
            "into it (pass overwrite=True to do so anyway)"
        )
    # Image i depends only on (seed, split, i), so images already on disk for the same
    # parameters are kept: a count change or an interrupted run only writes what is missing.
    keep = not overwrite and _same_images(previous, params)
    out.mkdir(parents=True, exist_ok=True)
    splits = {}
    for split in SPLITS:
        (out / split).mkdir(exist_ok=True)
        splits[split] = _numbered_jpegs(out / split)
        for index, path in splits[split].items():
            if not keep or index > counts[split]:
                path.unlink()
    # Written only once stale images are gone, so it never vouches for them.
    _write_manifest(out, params, complete=False)

    for split_index, split in enumerate(SPLITS):
        for i in range(1, counts[split] + 1):
            if keep and i in splits[split]:
                continue
            rng = np.random.default_rng([int(seed), split_index, i - 1])
            _write_pair(out / split / f"{i}.jpg", *render_pair(rng, size))
    _write_manifest(out, params, complete=True)
    return out
