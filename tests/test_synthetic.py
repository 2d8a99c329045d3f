"""Tests for p2p_keras.jobs.synthetic: palette, drawing, alignment, learnability, files."""

import json

import numpy as np
import pytest
from PIL import Image

from p2p_keras.jobs import synthetic
from p2p_keras.jobs.synthetic import (
    CLASS_NAMES,
    CMP_PALETTE,
    PALETTE_ARRAY,
    labels_to_rgb,
    make_synthetic_facades,
    render_pair,
)

SIZE = 64
WINDOW, FACADE, BACKGROUND, SHOP = (
    CLASS_NAMES.index(n) for n in ("window", "facade", "background", "shop")
)


def classes_of(label):
    """Class index per pixel of a label map; fails if a pixel is not exactly a palette colour."""
    equal = (label[:, :, None, :] == PALETTE_ARRAY[None, None]).all(-1)
    assert equal.any(-1).all(), "label map has colours outside CMP_PALETTE"
    return equal.argmax(-1)


@pytest.fixture(scope="module")
def pairs():
    """24 rendered pairs as (photos float (N, S, S, 3), classes int (N, S, S))."""
    rendered = [render_pair(np.random.default_rng([7, i]), SIZE) for i in range(24)]
    photos = np.stack([photo for photo, _ in rendered]).astype(np.float64)
    return photos, np.stack([classes_of(label) for _, label in rendered])


def window_corners(classes):
    """Number of window rectangles, counted by their top-left corners."""
    w = classes == WINDOW
    above = np.pad(w, ((1, 0), (0, 0)))[:-1]
    left = np.pad(w, ((0, 0), (1, 0)))[:, :-1]
    return int((w & ~above & ~left).sum())


def files_of(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.jpg"))}


# --------------------------------------------------------------------------------------------
# Palette and rendering
# --------------------------------------------------------------------------------------------


def test_palette_has_the_twelve_cmp_classes_in_order():
    assert CLASS_NAMES == (
        "background", "facade", "window", "door", "cornice", "sill",
        "balcony", "blind", "deco", "molding", "pillar", "shop",
    )  # fmt: skip
    colours = [rgb for _, rgb in CMP_PALETTE]
    assert len(set(colours)) == 12
    r, g, b = dict(CMP_PALETTE)["background"]
    assert b > 200 and r < 30 and g < 30  # dark blue
    assert labels_to_rgb(np.array([[0, 11]])).tolist() == [[list(colours[0]), list(colours[11])]]


def test_render_pair_shapes_dtype_and_exact_palette():
    for seed in range(8):
        photo, label = render_pair(np.random.default_rng(seed), SIZE)
        assert photo.shape == label.shape == (SIZE, SIZE, 3)
        assert photo.dtype == label.dtype == np.uint8
        present = set(np.unique(classes_of(label)).tolist())
        assert {BACKGROUND, FACADE, WINDOW} <= present
        assert len(present) >= 5


@pytest.mark.parametrize("size", [32, 100, 256])
def test_render_pair_at_other_sizes(size):
    photo, label = render_pair(np.random.default_rng(size), size)
    assert photo.shape == label.shape == (size, size, 3)
    assert {BACKGROUND, FACADE, WINDOW} <= set(np.unique(classes_of(label)).tolist())


def test_render_pair_is_deterministic_in_its_rng():
    a = render_pair(np.random.default_rng(3), SIZE)
    b = render_pair(np.random.default_rng(3), SIZE)
    c = render_pair(np.random.default_rng(4), SIZE)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[1], c[1])


def test_render_pair_rejects_tiny_sizes():
    with pytest.raises(ValueError, match="size"):
        render_pair(np.random.default_rng(0), 16)


def test_layouts_vary(pairs):
    _, classes = pairs
    counts = [window_corners(c) for c in classes]
    assert len(set(counts)) >= 8, counts
    masks = {(c == WINDOW).tobytes() for c in classes}
    assert len(masks) == len(classes)  # no two window layouts alike
    assert np.mean([SHOP in c for c in classes]) > 0.2  # shop fronts on some buildings...
    assert np.mean([SHOP in c for c in classes]) < 0.9  # ...but not on all


# --------------------------------------------------------------------------------------------
# Label / photo alignment and learnability
# --------------------------------------------------------------------------------------------


def test_photo_is_not_the_label(pairs):
    photos, classes = pairs
    labels = PALETTE_ARRAY[classes].astype(np.float64)
    assert np.abs(photos - labels).mean() > 50


def edge_contrast(photo, classes):
    """Mean horizontal photo gradient across label boundaries over that inside regions."""
    gradient = np.abs(np.diff(photo.mean(-1), axis=1))
    boundary = classes[:, 1:] != classes[:, :-1]
    return gradient[boundary].mean() / gradient[~boundary].mean()


def test_photo_edges_align_with_label_boundaries(pairs):
    photos, classes = pairs
    aligned = np.array([edge_contrast(p, c) for p, c in zip(photos, classes, strict=True)])
    shifted = np.array(
        [edge_contrast(p, np.roll(c, 2, axis=1)) for p, c in zip(photos, classes, strict=True)]
    )
    assert np.median(aligned) > 4 and (aligned > 2).all(), np.round(aligned, 1)
    assert np.median(shifted) < 2 and (aligned > 1.5 * shifted).all()  # 2 px off: edges lost


def test_windows_differ_from_wall_in_each_photo(pairs):
    photos, classes = pairs
    gaps = [
        np.abs(photo[c == WINDOW].mean(0) - photo[c == FACADE].mean(0)).sum()
        for photo, c in zip(photos, classes, strict=True)
    ]
    assert np.mean(np.array(gaps) > 40) >= 0.9, np.round(gaps)


def test_class_means_are_separable(pairs):
    photos, classes = pairs
    means = {k: photos[classes == k].mean(0) for k in (BACKGROUND, FACADE, WINDOW, SHOP)}
    for i in means:
        for j in means:
            if i < j:
                assert np.abs(means[i] - means[j]).sum() > 40, (CLASS_NAMES[i], CLASS_NAMES[j])


def test_labels_predict_the_photo(pairs):
    # A per-class mean colour, fitted on 16 pairs, beats the global mean on 8 others. (On the
    # real facades this ratio is about 0.98: there the photo needs context, not just the class.)
    photos, classes = pairs
    fit, held_out = slice(0, 16), slice(16, None)
    overall = photos[fit].reshape(-1, 3).mean(0)
    lookup = np.array(
        [photos[fit][classes[fit] == k].mean(0) if (classes[fit] == k).any() else overall
         for k in range(len(CMP_PALETTE))]
    )  # fmt: skip
    l1_lookup = np.abs(lookup[classes[held_out]] - photos[held_out]).mean()
    l1_global = np.abs(overall - photos[held_out]).mean()
    assert l1_lookup / l1_global < 0.85, (l1_lookup, l1_global)


def test_palette_matches_the_real_facades(facades_root):
    # Flat regions of real label maps (B, right half) sit on the palette colours, and every
    # palette colour is used.
    hits = np.zeros(len(CMP_PALETTE), int)
    near = total = 0
    for path in sorted((facades_root / "train").glob("*.jpg"))[:30]:
        label = np.asarray(Image.open(path).convert("RGB"), np.int32)[:, 256:]
        flat = (np.abs(label[1:-1, 1:-1] - label[:-2, 1:-1]).max(-1) < 6) & (
            np.abs(label[1:-1, 1:-1] - label[1:-1, :-2]).max(-1) < 6
        )
        pixels = label[1:-1, 1:-1][flat]
        dist = np.abs(pixels[:, None, :] - PALETTE_ARRAY[None].astype(np.int32)).max(-1)
        close = dist.min(1) <= 12
        near += close.sum()
        total += len(pixels)
        hits += np.bincount(dist.argmin(1)[close], minlength=len(CMP_PALETTE))
    assert near / total > 0.97
    assert (hits > 0).all(), dict(zip(CLASS_NAMES, hits.tolist(), strict=True))


# --------------------------------------------------------------------------------------------
# Dataset on disk
# --------------------------------------------------------------------------------------------


def test_writes_aligned_pix2pix_layout(tmp_path):
    root = make_synthetic_facades(tmp_path / "synth", train=3, val=2, test=1, size=SIZE)
    assert sorted(p.name for p in root.iterdir()) == ["synthetic.json", "test", "train", "val"]
    assert root == tmp_path / "synth"
    for split, n in (("train", 3), ("val", 2), ("test", 1)):
        names = sorted(p.name for p in (root / split).iterdir())
        assert names == sorted(f"{i}.jpg" for i in range(1, n + 1))
        for name in names:
            with Image.open(root / split / name) as im:
                assert im.format == "JPEG" and im.mode == "RGB" and im.size == (2 * SIZE, SIZE)
    manifest = json.loads((root / "synthetic.json").read_text())
    assert manifest["counts"] == {"train": 3, "val": 2, "test": 1}
    assert manifest["seed"] == 0 and manifest["size"] == SIZE


def test_photo_left_label_right(tmp_path):
    root = make_synthetic_facades(tmp_path, train=1, val=0, test=0, seed=5, size=SIZE)
    photo, label = render_pair(np.random.default_rng([5, 0, 0]), SIZE)
    ab = np.asarray(Image.open(root / "train" / "1.jpg"), np.int32)
    assert np.abs(ab[:, :SIZE] - photo).mean() < 6
    assert np.abs(ab[:, SIZE:] - label).mean() < 6
    assert (np.abs(ab[:, SIZE:] - label).max(-1) < 40).mean() > 0.99  # 4:4:4 keeps labels crisp


def test_same_seed_gives_identical_files(tmp_path):
    a = make_synthetic_facades(tmp_path / "a", train=3, val=1, test=1, seed=1, size=SIZE)
    b = make_synthetic_facades(tmp_path / "b", train=3, val=1, test=1, seed=1, size=SIZE)
    c = make_synthetic_facades(tmp_path / "c", train=3, val=1, test=1, seed=2, size=SIZE)
    assert files_of(a) == files_of(b)
    fa, fc = files_of(a), files_of(c)
    assert fa.keys() == fc.keys() and all(fa[k] != fc[k] for k in fa)


def test_images_do_not_depend_on_split_sizes(tmp_path):
    small = files_of(make_synthetic_facades(tmp_path / "s", train=2, val=1, test=0, size=SIZE))
    big = files_of(make_synthetic_facades(tmp_path / "b", train=4, val=2, test=1, size=SIZE))
    assert all(big[name] == data for name, data in small.items())
    assert big["train/1.jpg"] != big["val/1.jpg"]  # splits draw different images


def mtimes(root):
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in root.rglob("*.jpg")}


def test_is_idempotent_and_redraws_on_change(tmp_path):
    root = make_synthetic_facades(tmp_path / "s", train=3, val=1, test=1, size=SIZE)
    before, stamps = files_of(root), mtimes(root)
    assert make_synthetic_facades(tmp_path / "s", train=3, val=1, test=1, size=SIZE) == root
    assert mtimes(root) == stamps  # up to date: nothing rewritten

    make_synthetic_facades(tmp_path / "s", train=3, val=1, test=1, seed=9, size=SIZE)
    after = files_of(root)
    assert after.keys() == before.keys() and all(after[k] != before[k] for k in after)
    assert json.loads((root / "synthetic.json").read_text())["seed"] == 9

    make_synthetic_facades(tmp_path / "s", train=1, val=2, test=0, seed=9, size=SIZE)
    assert sorted(files_of(root)) == ["train/1.jpg", "val/1.jpg", "val/2.jpg"]
    assert files_of(root)["train/1.jpg"] == after["train/1.jpg"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no temporary folders left


def test_overwrite_redraws_the_same_bytes(tmp_path):
    root = make_synthetic_facades(tmp_path / "s", train=2, val=0, test=0, size=SIZE)
    before, stamps = files_of(root), mtimes(root)
    make_synthetic_facades(tmp_path / "s", train=2, val=0, test=0, size=SIZE, overwrite=True)
    assert files_of(root) == before and mtimes(root) != stamps


def test_a_damaged_manifest_or_missing_image_is_redrawn(tmp_path):
    root = make_synthetic_facades(tmp_path / "s", train=3, val=0, test=0, size=SIZE)
    expected = (root / "train" / "2.jpg").read_bytes()
    (root / "synthetic.json").write_text('{"seed": ')
    (root / "train" / "2.jpg").unlink()
    make_synthetic_facades(tmp_path / "s", train=3, val=0, test=0, size=SIZE)
    assert (root / "train" / "2.jpg").read_bytes() == expected


def test_an_interrupted_run_leaves_the_previous_folder_and_nothing_half_written(
    tmp_path, monkeypatch
):
    root = make_synthetic_facades(tmp_path / "s", train=2, val=0, test=0, size=SIZE)
    before = files_of(root)
    calls = []

    def crash_on_third(rng, size):
        calls.append(size)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return render_pair(rng, size)

    monkeypatch.setattr(synthetic, "render_pair", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        make_synthetic_facades(tmp_path / "s", train=4, val=0, test=0, size=SIZE)
    with pytest.raises(KeyboardInterrupt):
        calls.clear()
        make_synthetic_facades(tmp_path / "new", train=4, val=0, test=0, size=SIZE)
    assert files_of(root) == before
    assert json.loads((root / "synthetic.json").read_text())["counts"]["train"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_refuses_a_folder_it_did_not_write(tmp_path):
    precious = tmp_path / "train" / "1.jpg"
    precious.parent.mkdir()
    precious.write_bytes(b"real data")
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match="synthetic.json"):
            make_synthetic_facades(tmp_path, train=1, val=0, test=0, size=SIZE, overwrite=overwrite)
    assert precious.read_bytes() == b"real data"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["1.jpg", "train"]


def test_default_folder_is_under_the_project_data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("P2P_PROJECT_DIR", str(tmp_path))
    root = make_synthetic_facades(train=1, val=0, test=0, size=32)
    assert root == tmp_path / "data" / "synthetic_facades" and (root / "train" / "1.jpg").is_file()


@pytest.mark.parametrize(
    "kwargs", [{"train": -1}, {"val": 1.5}, {"size": 16}, {"seed": -1}, {"test": True}]
)
def test_rejects_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        make_synthetic_facades(tmp_path, **kwargs)
