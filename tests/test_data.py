"""Tests for p2p_keras.data: loading, jitter, determinism, bad files, decoding, atomic writes."""

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from p2p_keras.data import (
    BadImageError,
    atomic_path,
    check_paired,
    denormalize,
    format_report,
    jitter,
    load_paired,
    read_rgb,
    split_pair,
)
from p2p_keras.jobs.datasets import write_aligned

FACADES = Path(__file__).parents[2] / "shared/data/facades"


def noise(h, w, seed):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def save(path, array_or_image, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    im = (
        array_or_image
        if isinstance(array_or_image, Image.Image)
        else Image.fromarray(array_or_image)
    )
    im.save(path, **kwargs)
    return path


def make_aligned(root, split, halves):
    """Writes each (A, B) pair of uint8 arrays as root/split/NNN.png (lossless)."""
    for i, (a, b) in enumerate(halves):
        save(root / split / f"{i:03d}.png", np.concatenate([a, b], axis=1))
    return root


def noise_pairs(n, size=32, offset=0):
    return [
        (noise(size, size, offset + 2 * i), noise(size, size, offset + 2 * i + 1)) for i in range(n)
    ]


def epoch(ds):
    return [tuple(t.numpy() for t in batch) for batch in ds]


def to_uint8(x):
    return denormalize(x)


# --------------------------------------------------------------------------- shapes and batching


def test_training_shapes_dtype_range_and_drop_remainder(tmp_path):
    root = make_aligned(tmp_path, "train", noise_pairs(5))
    ds = load_paired(root, image_size=32, load_size=36, batch_size=2, seed=0)
    assert ds.element_spec[0].shape == (2, 32, 32, 3)
    batches = epoch(ds)
    assert len(batches) == 2  # 5 pairs, batch 2, remainder dropped
    for x, y in batches:
        for t in (x, y):
            assert t.shape == (2, 32, 32, 3)
            assert t.dtype == np.float32
            assert t.min() >= -1.0 and t.max() <= 1.0
            assert t.min() < -0.9 and t.max() > 0.9  # noise covers the whole range


def test_eval_keeps_order_last_batch_and_exact_pixels(tmp_path):
    halves = noise_pairs(5)
    root = make_aligned(tmp_path, "val", halves)
    ds = load_paired(root, "val", image_size=32, batch_size=2)
    batches = epoch(ds)
    assert [x.shape[0] for x, _ in batches] == [2, 2, 1]
    xs = np.concatenate([x for x, _ in batches])
    ys = np.concatenate([y for _, y in batches])
    # Same size as the halves: no resampling, so values are exact and in file order.
    for i, (a, b) in enumerate(halves):
        np.testing.assert_allclose(xs[i], a / 127.5 - 1.0, atol=1e-6)
        np.testing.assert_allclose(ys[i], b / 127.5 - 1.0, atol=1e-6)
    # A second pass (from the cache) gives the same data.
    np.testing.assert_array_equal(np.concatenate([x for x, _ in epoch(ds)]), xs)


def test_non_square_sizes(tmp_path):
    root = make_aligned(tmp_path, "train", noise_pairs(3, size=32))
    train = load_paired(root, image_size=(24, 40), load_size=(28, 44), seed=1)
    x, y = next(iter(train))
    assert x.shape == (1, 24, 40, 3) and y.shape == (1, 24, 40, 3)
    evaluation = load_paired(root, image_size=(16, 48), training=False)
    x, y = next(iter(evaluation))
    assert x.shape == (1, 16, 48, 3) and y.shape == (1, 16, 48, 3)


def test_non_square_halves_are_refused_in_aligned_layout_and_work_as_two_folders(tmp_path):
    halves = [(noise(20, 30, i), noise(20, 30, i + 9)) for i in range(2)]
    root = make_aligned(tmp_path / "aligned", "train", halves)
    assert [b.reason for b in check_paired(root)] == [
        "not an A|B pair: width 60 is not 2 x height 20"
    ] * 2
    for i, (a, b) in enumerate(halves):
        save(tmp_path / "two" / "A" / "train" / f"{i}.png", a)
        save(tmp_path / "two" / "B" / "train" / f"{i}.png", b)
    ds = load_paired(tmp_path / "two", image_size=(20, 30), training=False)
    x, y = next(iter(ds))
    np.testing.assert_array_equal(to_uint8(x[0]), halves[0][0])
    np.testing.assert_array_equal(to_uint8(y[0]), halves[0][1])


# --------------------------------------------------------------------------- jitter


def find_window(image, originals, crop=32):
    """Returns every (file index, dy, dx, flipped) whose crop of originals equals image."""
    hits = []
    for i, orig in enumerate(originals):
        for dy in range(orig.shape[0] - crop + 1):
            for dx in range(orig.shape[1] - crop + 1):
                window = orig[dy : dy + crop, dx : dx + crop]
                for flipped in (False, True):
                    if np.array_equal(window[:, ::-1] if flipped else window, image):
                        hits.append((i, dy, dx, flipped))
    return hits


def test_same_crop_and_flip_for_both_halves_and_jitter_happens(tmp_path):
    a_list = [noise(36, 36, 100 + i) for i in range(6)]
    b_list = [255 - a for a in a_list]
    root = make_aligned(tmp_path, "train", list(zip(a_list, b_list, strict=True)))
    # Halves already at load_size, so the crop is an exact window of the file.
    ds = load_paired(root, image_size=32, load_size=36, seed=7)
    windows = []
    for _ in range(3):
        for x, y in ds:
            np.testing.assert_allclose(x.numpy(), -y.numpy(), atol=1e-6)
            a_hits = find_window(to_uint8(x[0]), a_list)
            b_hits = find_window(to_uint8(y[0]), b_list)
            assert len(a_hits) == 1, a_hits
            assert a_hits == b_hits
            windows.append(a_hits[0])
    assert sorted({w[0] for w in windows}) == list(range(6))
    offsets = {(w[1], w[2]) for w in windows}
    flips = [w[3] for w in windows]
    assert len(offsets) >= 5, offsets  # 18 draws over 25 possible offsets
    assert 3 <= sum(flips) <= 15, flips  # mirrored sometimes, not always


def test_training_resizes_to_load_size_before_crop(tmp_path):
    # A horizontal ramp: after resizing 32 -> 64 and cropping 32, the visible
    # range must shrink to about half, which an identity crop cannot do.
    ramp = np.tile(np.linspace(0, 255, 32).astype(np.uint8)[None, :, None], (32, 1, 3))
    root = make_aligned(tmp_path, "train", [(ramp, ramp)] * 2)
    ds = load_paired(root, image_size=32, load_size=64, seed=0)
    for x, y in ds:
        row = to_uint8(x[0])[16, :, 0].astype(int)
        assert 100 < abs(row[-1] - row[0]) < 160, row
        np.testing.assert_array_equal(x.numpy(), y.numpy())


# --------------------------------------------------------------------------- determinism, direction


def test_public_jitter_resizes_crops_and_flips_both_images_alike():
    a = tf.constant(noise(32, 32, 0))
    flips = 0
    for seed in range(20):
        ja, jb = jitter(a, 255 - a, seed, image_size=32, load_size=40)
        assert ja.shape == jb.shape == (32, 32, 3) and ja.dtype == tf.uint8
        np.testing.assert_array_equal(ja.numpy(), 255 - jb.numpy())  # same window, same flip
        again, _ = jitter(a, 255 - a, seed, image_size=32, load_size=40)
        np.testing.assert_array_equal(ja.numpy(), again.numpy())  # stateless
        same_size, _ = jitter(a, a, tf.constant([seed, 1]), image_size=32)
        flips += not np.array_equal(same_size.numpy(), a.numpy())  # no resize: only flips
    assert 3 <= flips <= 17, flips


def test_seed_determinism(tmp_path):
    root = make_aligned(tmp_path, "train", noise_pairs(6, size=32))

    def two_epochs(seed):
        ds = load_paired(root, image_size=32, load_size=36, seed=seed)
        return [np.stack([x for x, _ in epoch(ds)]) for _ in range(2)]

    first, again, other = two_epochs(3), two_epochs(3), two_epochs(4)
    for e in range(2):
        np.testing.assert_array_equal(first[e], again[e])
        assert not np.array_equal(first[e], other[e])
    assert not np.array_equal(first[0], first[1])  # each epoch gets new crops/order


def test_direction_swap(tmp_path):
    root = make_aligned(tmp_path, "train", noise_pairs(4))
    for training in (False, True):
        kwargs = {"image_size": 32, "load_size": 36, "training": training, "seed": 5}
        a2b = epoch(load_paired(root, direction="AtoB", **kwargs))
        b2a = epoch(load_paired(root, direction="BtoA", **kwargs))
        for (xa, ya), (xb, yb) in zip(a2b, b2a, strict=True):
            np.testing.assert_array_equal(xa, yb)
            np.testing.assert_array_equal(ya, xb)
            assert not np.array_equal(xa, ya)
    with pytest.raises(ValueError, match="direction"):
        load_paired(root, direction="AB")


def test_argument_errors(tmp_path):
    root = make_aligned(tmp_path, "train", noise_pairs(2))
    with pytest.raises(ValueError, match="load_size"):
        load_paired(root, image_size=32, load_size=16)
    with pytest.raises(ValueError, match="batch_size"):
        load_paired(root, image_size=32, load_size=36, batch_size=3)
    with pytest.raises(ValueError, match="image_size"):
        load_paired(root, image_size=(32, 0))


def test_file_cache(tmp_path):
    root = make_aligned(tmp_path / "data", "val", noise_pairs(3))
    cache = tmp_path / "cache" / "val"
    cache.parent.mkdir()
    ds = load_paired(root, "val", image_size=16, cache=str(cache))
    first, second = epoch(ds), epoch(ds)
    assert list(cache.parent.glob("val*.index"))
    for (x1, y1), (x2, y2) in zip(first, second, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)


def labelled_pairs(root, n):
    """Writes `n` tiny pairs whose A half is filled with its index, (i % 256, i // 256, 0)."""
    return make_aligned(
        root,
        "train",
        [(np.full((4, 4, 3), (i % 256, i // 256, 0), np.uint8),) * 2 for i in range(n)],
    )


def indices(ds):
    return [int(x[0, 0, 0, 0]) + 256 * int(x[0, 0, 0, 1]) for x, _ in epoch(ds)]


@pytest.mark.parametrize("cache", ["auto", False])
def test_training_shuffles_the_whole_split_each_epoch(tmp_path, cache):
    """Guards the training order against a shuffle buffer that only mixes nearby files."""
    root = labelled_pairs(tmp_path, 600)
    ds = load_paired(root, image_size=4, load_size=4, seed=0, cache=cache)
    ds = ds.map(lambda x, y: (tf.round((x + 1) * 127.5), y))
    first, second = indices(ds), indices(ds)
    assert sorted(first) == sorted(second) == list(range(600))
    assert max(first[:50]) >= 450 and max(second[:50]) >= 450  # a buffer of 400: all < 450
    assert first != second
    again = load_paired(root, image_size=4, load_size=4, seed=0, cache=cache)
    assert indices(again.map(lambda x, y: (tf.round((x + 1) * 127.5), y))) == first


def test_auto_cache_keeps_only_what_fits_in_memory(tmp_path, monkeypatch):
    """Guards the memory against a cache larger than the limit: it warns once, reads from disk."""
    import p2p_keras.data

    root = make_aligned(tmp_path, "val", noise_pairs(3, size=16))
    needed = 3 * 16 * 16 * 3 * 2  # pairs x pixels x channels x 2 images, uint8
    for limit, cached in [(needed, True), (needed - 1, False)]:
        monkeypatch.setattr(p2p_keras.data, "_cache_limit", lambda limit=limit: limit)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = load_paired(root, "val", image_size=16)
            first = epoch(ds) + epoch(ds)
        messages = [str(w.message) for w in caught if "memory cache" in str(w.message)]
        assert messages == [
            f"{root}/val: the decoded pairs need 4.61e-06 GB, more than the memory cache's "
            "4.61e-06 GB (50% of the RAM); decoding from disk every epoch instead. Pass "
            "cache=PATH for a file cache."
        ] * (not cached)
        moved = tmp_path / "moved"
        (root / "val").rename(moved)
        try:
            if cached:
                np.testing.assert_array_equal(epoch(ds)[0][0], first[0][0])
            else:
                with pytest.raises(tf.errors.OpError):
                    epoch(ds)
        finally:
            moved.rename(root / "val")


# --------------------------------------------------------------------------- two-folder layout


def test_two_folder_layout_matches_aligned_after_write_aligned(tmp_path):
    src = tmp_path / "src"
    halves = noise_pairs(4)
    for split in ("train", "val"):
        for i, (a, b) in enumerate(halves):
            save(src / "A" / split / f"img{i}.png", a)
            save(src / "B" / split / f"img{i}.png", b)
    out = tmp_path / "aligned"
    assert write_aligned(src / "A", src / "B", out) == {"train": 4, "val": 4}
    assert sorted(p.name for p in (out / "train").iterdir()) == [f"img{i}.png" for i in range(4)]
    assert Image.open(out / "train" / "img0.png").size == (64, 32)
    assert check_paired(src) == [] and check_paired(out) == []
    for training in (False, True):
        kwargs = {"image_size": 32, "load_size": 36, "training": training, "seed": 2}
        two = epoch(load_paired(src, "train", **kwargs))
        one = epoch(load_paired(out, "train", **kwargs))
        assert len(two) == len(one) == 4
        for (x2, y2), (x1, y1) in zip(two, one, strict=True):
            np.testing.assert_array_equal(x2, x1)
            np.testing.assert_array_equal(y2, y1)
    x, y = next(iter(load_paired(src, "val", image_size=32)))
    np.testing.assert_array_equal(to_uint8(x[0]), halves[0][0])
    np.testing.assert_array_equal(to_uint8(y[0]), halves[0][1])


# --------------------------------------------------------------------------- bad files


def _zero_bytes(path):
    path.write_bytes(b"")


def _truncated_jpeg(path):
    buf = io.BytesIO()
    Image.fromarray(noise(32, 64, 9)).save(buf, "JPEG")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


def _text_as_jpeg(path):
    path.write_text("this is not an image\n")


def _square_image(path):
    save(path, noise(32, 32, 9))


BAD_ALIGNED = {
    "zero_bytes": (_zero_bytes, "0 bytes"),
    "truncated_jpeg": (_truncated_jpeg, "truncated"),
    "text_named_jpg": (_text_as_jpeg, "not an image"),
    "square_image": (_square_image, "not an A|B pair"),
}


@pytest.mark.parametrize("kind", list(BAD_ALIGNED))
def test_bad_aligned_file(tmp_path, kind):
    make_fn, reason = BAD_ALIGNED[kind]
    root = make_aligned(tmp_path, "train", noise_pairs(2))
    bad_path = tmp_path / "train" / "zz_bad.jpg"
    make_fn(bad_path)

    bad = check_paired(root)
    assert check_paired(root, ["train"]) == bad
    assert len(bad) == 1 and bad[0].path == str(bad_path) and reason in bad[0].reason
    report = format_report(bad)
    assert report.startswith("1 bad file:") and str(bad_path) in report and reason in report

    with pytest.raises(BadImageError, match="zz_bad.jpg") as info:
        load_paired(root, image_size=32, load_size=36)
    assert isinstance(info.value, ValueError) and info.value.bad == bad

    with pytest.warns(UserWarning, match="zz_bad.jpg"):
        ds = load_paired(root, image_size=32, training=False, skip_bad=True)
    assert sum(x.shape[0] for x, _ in ds) == 2


def test_missing_partner_in_two_folder_layout(tmp_path):
    for name in ("a.png", "b.png"):
        save(tmp_path / "A" / "train" / name, noise(8, 8, 0))
        save(tmp_path / "B" / "train" / name, noise(8, 8, 1))
    only_a = save(tmp_path / "A" / "train" / "only_a.png", noise(8, 8, 2))
    only_b = save(tmp_path / "B" / "train" / "only_b.png", noise(8, 8, 3))
    bad = check_paired(tmp_path)
    assert [b.path for b in bad] == [str(only_a), str(only_b)]
    assert all("missing partner" in b.reason for b in bad)
    assert str(tmp_path / "B" / "train" / "only_a.png") in bad[0].reason
    with pytest.raises(BadImageError, match="only_a.png") as info:
        load_paired(tmp_path, image_size=8, load_size=8)
    assert "only_b.png" in str(info.value)
    with pytest.warns(UserWarning, match="only_b.png"):
        ds = load_paired(tmp_path, image_size=8, training=False, skip_bad=True)
    assert sum(x.shape[0] for x, _ in ds) == 2


def test_bad_file_in_two_folder_layout(tmp_path):
    save(tmp_path / "A" / "test" / "a.png", noise(8, 8, 0))
    (tmp_path / "B" / "test").mkdir(parents=True)
    _truncated_jpeg(tmp_path / "B" / "test" / "a.png")
    bad = check_paired(tmp_path)
    assert len(bad) == 1 and bad[0].path == str(tmp_path / "B" / "test" / "a.png")
    assert "truncated" in bad[0].reason


def test_missing_and_empty_splits(tmp_path):
    root = make_aligned(tmp_path, "train", noise_pairs(2))
    (root / "val").mkdir()
    (root / "val" / "notes.txt").write_text("not an image")
    with pytest.raises(BadImageError, match="no image files") as info:
        load_paired(root, "val")
    assert f"{root / 'val'}: no image files" in str(info.value)
    with pytest.raises(FileNotFoundError, match="No split folder 'test'") as info:
        load_paired(root, "test")
    assert str(root) in str(info.value) and "splits found: train, val" in str(info.value)
    with pytest.raises(FileNotFoundError, match="Dataset folder not found"):
        load_paired(tmp_path / "nowhere")

    bad = check_paired(root)
    assert [(b.path, b.reason.split(" (")[0]) for b in bad] == [
        (str(root / "val"), "no image files")
    ]
    bad = check_paired(root, ["train", "test"])
    assert [(b.path, b.reason) for b in bad] == [(str(root / "test"), "split folder not found")]
    assert check_paired(root, "train") == []
    assert format_report([]) == "No problems found."
    with pytest.raises(FileNotFoundError):
        check_paired(tmp_path / "does_not_exist")


def test_hidden_and_non_image_files_are_ignored(tmp_path):
    root = make_aligned(tmp_path, "train", noise_pairs(2))
    (root / "train" / "._000.png").write_bytes(b"macOS resource fork")
    (root / "train" / "notes.txt").write_text("hello")
    assert check_paired(root) == []
    assert sum(x.shape[0] for x, _ in load_paired(root, image_size=32, training=False)) == 2


def test_all_files_bad_with_skip_bad_raises(tmp_path):
    root = tmp_path
    _text_as_jpeg(save(root / "train" / "a.png", noise(4, 8, 0)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="No usable image pairs"):
            load_paired(root, skip_bad=True)


# --------------------------------------------------------------------------- robust decoding

RED, BLUE = (220, 30, 40), (20, 60, 230)


def grey(v):
    return (v, v, v)


def _pair_image(left, right, h=16, w=16, mode="RGB"):
    """An A|B image with two flat colours (flat colours survive any resize exactly)."""
    arr = np.zeros((h, 2 * w, 3), np.uint8)
    arr[:, :w], arr[:, w:] = left, right
    im = Image.fromarray(arr)
    if mode == "P":  # an adaptive palette holds both colours exactly (no dithering)
        return im.convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    return im.convert(mode)


def rgb(mode="RGB", h=16, w=16):
    return lambda: _pair_image(RED, BLUE, h, w, mode)


def gray(left, right, mode="L"):
    def make():
        arr = np.zeros((16, 32), np.uint8)
        arr[:, :16], arr[:, 16:] = left, right
        return Image.fromarray(arr).convert(mode)

    return make


def gray16():
    arr = np.zeros((16, 32), np.uint16)
    arr[:, :16], arr[:, 16:] = 40000, 1000  # 40000 / 257 = 155.6, 1000 / 257 = 3.9
    return Image.fromarray(arr)


def rgb16_png_bytes():  # Pillow cannot write 16-bit RGB, TF can
    arr = np.zeros((16, 32, 3), np.uint16)
    arr[:, :16], arr[:, 16:] = np.array(RED) * 257, np.array(BLUE) * 257
    return tf.io.encode_png(tf.constant(arr)).numpy()


def rgba():
    im = _pair_image(RED, BLUE, mode="RGBA")
    im.putalpha(100)
    return im


DECODE_CASES = {
    # name: (file name, make image or bytes, save kwargs, expected A, expected B, tolerance)
    "grayscale_png": ("g.png", gray(50, 200), {}, grey(50), grey(200), 0),
    "grayscale_jpg": ("g.jpg", gray(50, 200), {}, grey(50), grey(200), 3),
    "palette_png": ("p.png", rgb("P"), {}, RED, BLUE, 0),
    "rgba_png": ("rgba.png", rgba, {}, RED, BLUE, 0),
    "la_png": ("la.png", gray(80, 160, "LA"), {}, grey(80), grey(160), 0),
    "cmyk_jpg": ("c.jpg", rgb("CMYK"), {}, RED, BLUE, 6),
    "16bit_gray_png": ("g16.png", gray16, {}, grey(156), grey(4), 1),
    "16bit_tiff_named_png": ("g16.png", gray16, {"format": "TIFF"}, grey(156), grey(4), 1),
    "16bit_rgb_png": ("rgb16.png", rgb16_png_bytes, {}, RED, BLUE, 0),
    "png_named_jpg": ("png.jpg", rgb(), {"format": "PNG"}, RED, BLUE, 0),
    "palette_bmp": ("p.bmp", rgb("P"), {}, RED, BLUE, 0),
    "1bit_bmp": ("bw.bmp", gray(0, 255, "1"), {}, grey(0), grey(255), 0),
    "rgb_bmp": ("rgb.bmp", rgb(), {}, RED, BLUE, 0),
    "tiff_named_png": ("t.png", rgb(), {"format": "TIFF"}, RED, BLUE, 0),
    "tiny_8x4": ("tiny.png", rgb(h=4, w=4), {}, RED, BLUE, 0),
    "large_2048x1024": ("big.jpg", rgb(h=1024, w=1024), {"quality": 95}, RED, BLUE, 3),
}


@pytest.mark.parametrize("case", list(DECODE_CASES))
def test_robust_decoding(tmp_path, case):
    name, make, save_kwargs, a_colour, b_colour, tol = DECODE_CASES[case]
    path = tmp_path / "test" / name
    path.parent.mkdir()
    content = make()
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        content.save(path, **save_kwargs)
    assert check_paired(tmp_path) == []
    ds = load_paired(tmp_path, "test", image_size=(32, 24), cache=False)
    (x, y), *rest = epoch(ds)
    assert not rest and x.shape == y.shape == (1, 32, 24, 3)
    # Away from the borders, where JPEG blocks at the A|B seam bleed colour.
    a, b = to_uint8(x[0])[8:-8, 6:-6].astype(int), to_uint8(y[0])[8:-8, 6:-6].astype(int)
    assert np.abs(a - a_colour).max() <= tol, (a.min((0, 1)), a.max((0, 1)))
    assert np.abs(b - b_colour).max() <= tol, (b.min((0, 1)), b.max((0, 1)))


def test_downscaling_is_antialiased(tmp_path):
    # Shrinking noise 8x must average it out (as PIL does), not pick sparse pixels.
    root = make_aligned(tmp_path, "val", noise_pairs(1, size=256))
    x, _ = next(iter(load_paired(root, "val", image_size=32)))
    assert x.shape == (1, 32, 32, 3)
    assert float(tf.math.reduce_std(to_uint8(x).astype(np.float32))) < 20


def test_mixed_pillow_and_tf_files_in_training(tmp_path):
    (tmp_path / "train").mkdir()
    _pair_image(RED, BLUE, mode="P").save(tmp_path / "train" / "a.bmp")  # Pillow route
    _pair_image(BLUE, RED).save(tmp_path / "train" / "b.png")  # TF route
    ds = load_paired(tmp_path, image_size=16, load_size=20, batch_size=2, seed=0)
    (x, y), *rest = epoch(ds)
    assert not rest
    colours = sorted(tuple(to_uint8(x[i])[8, 8]) for i in range(2))
    assert colours == sorted([BLUE, RED])
    for i in range(2):
        assert tuple(to_uint8(y[i])[8, 8]) == (BLUE if tuple(to_uint8(x[i])[8, 8]) == RED else RED)


# --------------------------------------------------------------------------- helpers


def test_read_rgb_converts_grey_and_scales_16_bit(tmp_path):
    save(tmp_path / "g16.png", np.full((4, 6), 40000, np.uint16))
    save(tmp_path / "p.png", Image.new("P", (3, 2), 0))
    assert read_rgb(tmp_path / "g16.png").shape == (4, 6, 3)
    assert (read_rgb(tmp_path / "g16.png") == 156).all()
    assert read_rgb(str(tmp_path / "p.png")).dtype == np.uint8


def test_denormalize_and_split_pair():
    np.testing.assert_array_equal(
        denormalize(np.array([-1.5, -1.0, 0.0, 0.5, 1.0, 2.0])), [0, 0, 128, 191, 255, 255]
    )
    assert denormalize(tf.zeros((2, 4, 4, 3))).dtype == np.uint8
    image = np.arange(2 * 3 * 8 * 3).reshape(2, 3, 8, 3)
    a, b = split_pair(image)
    np.testing.assert_array_equal(a, image[:, :, :4])
    np.testing.assert_array_equal(b, image[:, :, 4:])
    b2, a2 = split_pair(tf.constant(image[0]), "BtoA")
    np.testing.assert_array_equal(a2.numpy(), image[0, :, :4])
    np.testing.assert_array_equal(b2.numpy(), image[0, :, 4:])
    with pytest.raises(ValueError, match="direction"):
        split_pair(image, "sideways")


# --------------------------------------------------------------------------- real data


@pytest.mark.skipif(not FACADES.is_dir(), reason=f"facades not found at {FACADES}")
def test_facades_all_splits():
    assert check_paired(FACADES) == []
    for split, count in {"train": 400, "val": 100, "test": 106}.items():
        ds = load_paired(FACADES, split, direction="BtoA", training=False, cache=False)
        n = 0
        for x, y in ds:
            assert x.shape == y.shape == (1, 256, 256, 3)
            n += 1
        assert n == count, split
        assert -1.0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 1.0


# --------------------------------------------------------------------------- atomic writes


@pytest.mark.parametrize("name", ["run.json", "model.keras", "g.weights.h5", "x.npy"])
def test_atomic_path_keeps_the_suffix_and_publishes_on_success(tmp_path, name):
    target = tmp_path / "sub" / name
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.endswith(name.split(".", 1)[1])
        assert tmp.name.startswith(".") and not tmp.exists()
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in target.parent.iterdir()) == [name]


def test_atomic_path_works_with_numpy_pil_and_json_writers(tmp_path):
    with atomic_path(tmp_path / "a.npy") as tmp:
        np.save(tmp, np.arange(3))
    with atomic_path(tmp_path / "a.png") as tmp:
        Image.fromarray(noise(4, 4, 0)).save(tmp)
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), [0, 1, 2])
    assert read_rgb(tmp_path / "a.png").shape == (4, 4, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy", "a.png"]


def test_atomic_path_error_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "state.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "new.json") as tmp:
        raise RuntimeError("crash before writing")
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_atomic_path_replaces_a_folder_in_one_step(tmp_path):
    target = tmp_path / "facades"
    for content in ("first", "second"):
        with atomic_path(target) as tmp:
            (tmp / "train").mkdir(parents=True)
            (tmp / "train" / "1.txt").write_text(content)
    assert (target / "train" / "1.txt").read_text() == "second"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "half").write_text("x")
        raise RuntimeError
    assert [p.name for p in tmp_path.iterdir()] == ["facades"]
    assert (target / "train" / "1.txt").read_text() == "second"
