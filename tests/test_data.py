"""Tests of edgeseg.data: readers, image kinds, normalisation, datasets and splits.

Small files are generated in tmp_path; three real 256x256 DSB2018 images live in
tests/fixtures/dsb2018_mini; tests on the full DSB2018 data skip where ../shared is absent.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import random
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg import imageio
from edgeseg.data import (
    IMAGE_KINDS,
    NormConfig,
    NormInfo,
    Sample,
    image_kind,
    load_dataset,
    load_split,
    normalize,
    read_image,
    read_image_raw,
    read_labels,
    sample_kinds,
    save_split,
    split_dataset,
    to_grey,
)
from edgeseg.errors import DataError, EdgesegError, InputError

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "dsb2018_mini"
DSB = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dsb2018"
STAGE1 = DSB / "stage1_train"
KAGGLE = DSB / "kaggle_layout_sample"

# ---------------------------------------------------------------- helpers


def need(path: Path) -> Path:
    if not path.is_dir():
        pytest.skip(f"DSB2018 data not found at {path}: these tests need ../shared/data/dsb2018")
    return path


def write(path: Path, arr: np.ndarray, params: tuple = ()) -> Path:
    """Write ``arr`` (RGB/RGBA order for colour) with OpenCV; returns the path."""
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR if arr.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    ok, buf = cv2.imencode(path.suffix, arr, list(params))
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def blobs(h: int = 64, w: int = 80, bright_bg: bool = False, seed: int = 0) -> np.ndarray:
    """uint8 grey image with a few disc 'nuclei' on a noisy background."""
    rng = np.random.default_rng(seed)
    img = rng.normal(20, 3, (h, w))
    for _ in range(4):
        cv2.circle(img, (int(rng.integers(8, w - 8)), int(rng.integers(8, h - 8))), 6, 200, -1)
    img = np.clip(img, 0, 255).astype(np.uint8)
    return 255 - img if bright_bg else img


def rgb_test_image() -> np.ndarray:
    img = np.zeros((16, 24, 3), np.uint8)
    img[:, :8, 0] = 255  # red stripe
    img[:, 8:16, 1] = 200  # green stripe
    img[:, 16:, 2] = 100  # blue stripe
    return img


def sample_ids(samples) -> list[str]:
    return [s.id for s in samples]


# ---------------------------------------------------------------- read_image_raw


def test_read_grey_8_and_16_bit_png(tmp_path):
    a8 = blobs()
    a16 = (np.arange(64 * 80, dtype=np.uint16) * 13).reshape(64, 80)
    r8 = read_image_raw(write(tmp_path / "a8.png", a8))
    r16 = read_image_raw(write(tmp_path / "a16.png", a16))
    assert r8.dtype == np.uint8 and np.array_equal(r8, a8)
    assert r16.dtype == np.uint16 and np.array_equal(r16, a16)
    g = read_image(tmp_path / "a16.png")
    assert g.dtype == np.float32 and g.shape == (64, 80) and g.max() == a16.max()


def test_read_rgb_and_rgba_png_is_rgb_order(tmp_path):
    rgb = rgb_test_image()
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    r = read_image_raw(write(tmp_path / "rgb.png", rgb))
    ra = read_image_raw(write(tmp_path / "rgba.png", rgba))
    assert r.shape == (16, 24, 3) and np.array_equal(r, rgb)
    assert ra.shape == (16, 24, 3) and np.array_equal(ra, rgb)  # alpha dropped
    assert ra.flags.c_contiguous
    assert tuple(r[0, 0]) == (255, 0, 0)


def test_read_16bit_rgb_png(tmp_path):
    rgb = rgb_test_image().astype(np.uint16) * 257
    r = read_image_raw(write(tmp_path / "rgb16.png", rgb))
    assert r.dtype == np.uint16 and np.array_equal(r, rgb)


def test_read_tiff_16bit_float_and_jpeg(tmp_path):
    a16 = (np.arange(40 * 30, dtype=np.uint16) * 50).reshape(40, 30)
    f32 = np.linspace(-1, 5, 40 * 30, dtype=np.float32).reshape(40, 30)
    assert np.array_equal(read_image_raw(write(tmp_path / "a.tif", a16)), a16)
    rf = read_image_raw(write(tmp_path / "f.tiff", f32))
    assert rf.dtype == np.float32 and np.array_equal(rf, f32)
    img = np.full((32, 32), 120, np.uint8)
    rj = read_image_raw(write(tmp_path / "j.jpg", img, (cv2.IMWRITE_JPEG_QUALITY, 95)))
    assert rj.dtype == np.uint8 and rj.shape == (32, 32)
    assert np.abs(rj.astype(int) - 120).max() <= 2
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[..., 0] = 200
    rc = read_image_raw(write(tmp_path / "c.jpeg", rgb, (cv2.IMWRITE_JPEG_QUALITY, 95)))
    assert rc.shape == (32, 32, 3) and rc[..., 0].mean() > 150 and rc[..., 2].mean() < 50


def test_read_non_ascii_path(tmp_path):
    folder = tmp_path / "données_核"
    folder.mkdir()
    a = blobs()
    p = write(folder / "noyaux_é.png", a)
    assert np.array_equal(read_image_raw(p), a)
    assert np.array_equal(read_image_raw(str(p)), a)


def test_read_int32_and_uint32_tiff(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    lab = np.zeros((20, 30), np.int32)
    lab[2:6, 3:9] = 70000
    lab[10:15, 10:20] = 5
    for dt in (np.int32, np.uint32):
        p = tmp_path / f"lab_{np.dtype(dt).name}.tif"
        tifffile.imwrite(p, lab.astype(dt))
        r = read_labels(p)
        assert r.dtype == np.int32 and np.array_equal(r, lab)


@pytest.mark.parametrize(
    "name, content, expect",
    [
        ("empty.png", b"", "0 bytes"),
        ("text.png", b"this is not an image\n" * 10, "could not decode"),
        ("random.jpg", bytes(range(256)) * 4, "could not decode"),
    ],
)
def test_read_bad_files(tmp_path, name, content, expect):
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(DataError) as ei:
        read_image_raw(p)
    msg = str(ei.value)
    assert str(p) in msg and expect in msg and "expected" in msg


def test_read_missing_file_and_folder(tmp_path):
    with pytest.raises(DataError, match="not found") as ei:
        read_image_raw(tmp_path / "nope.png")
    assert str(tmp_path / "nope.png") in str(ei.value)
    with pytest.raises(DataError, match="is a folder"):
        read_image_raw(tmp_path)
    assert issubclass(DataError, EdgesegError)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif"])
def test_read_truncated_file(tmp_path, suffix):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (128, 128), dtype=np.uint8)
    ok, buf = cv2.imencode(suffix, img)
    p = tmp_path / f"cut{suffix}"
    p.write_bytes(buf.tobytes()[: len(buf) // 2])
    with pytest.raises(DataError) as ei:
        read_image_raw(p)
    assert str(p) in str(ei.value)


def test_read_png_without_iend_is_truncated(tmp_path):
    ok, buf = cv2.imencode(".png", blobs())
    p = tmp_path / "noend.png"
    p.write_bytes(buf.tobytes()[:-12])  # drop the IEND chunk only
    with pytest.raises(DataError, match="truncated"):
        read_image_raw(p)


def test_read_multipage_tiff_is_a_stack_error(tmp_path):
    p = tmp_path / "stack.tif"
    ok = cv2.imwritemulti(str(p), [blobs(seed=i) for i in range(3)])
    assert ok
    with pytest.raises(DataError) as ei:
        read_image_raw(p)
    msg = str(ei.value)
    assert str(p) in msg and "3 pages" in msg and "2-D" in msg and "plane" in msg


def test_read_five_channel_tiff_is_rejected(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    p = tmp_path / "c5.tif"
    tifffile.imwrite(p, np.zeros((16, 16, 5), np.uint8), planarconfig="contig")
    with pytest.raises(DataError) as ei:
        read_image_raw(p)
    assert str(p) in str(ei.value) and "2-D" in str(ei.value)


def test_read_zero_size_decode_is_rejected(tmp_path, monkeypatch):
    p = write(tmp_path / "z.png", blobs())
    monkeypatch.setattr(imageio.cv2, "imdecode", lambda *a: np.zeros((0, 5), np.uint8))
    with pytest.raises(DataError, match="empty image") as ei:
        read_image_raw(p)
    assert str(p) in str(ei.value)


# ---------------------------------------------------------------- to_grey


def test_to_grey_shapes_and_luminance():
    rgb = rgb_test_image()
    g = to_grey(rgb)
    assert g.dtype == np.float32 and g.shape == (16, 24) and g.flags.c_contiguous
    assert g[0, 0] == pytest.approx(0.299 * 255, abs=1e-3)
    assert g[0, 10] == pytest.approx(0.587 * 200, abs=1e-3)
    assert g[0, 20] == pytest.approx(0.114 * 100, abs=1e-3)
    rgba = np.dstack([rgb, np.full((16, 24), 255, np.uint8)])
    assert np.array_equal(to_grey(rgba), g)
    a = np.arange(12, dtype=np.int16).reshape(3, 4) - 6
    assert np.array_equal(to_grey(a), a.astype(np.float32))  # raw scale, negatives kept
    assert np.array_equal(to_grey(a[..., None]), a.astype(np.float32))
    assert np.array_equal(to_grey(np.eye(3, dtype=bool)), np.eye(3, dtype=np.float32))
    u16 = np.full((4, 4, 3), 60000, np.uint16)
    assert np.allclose(to_grey(u16), 60000, rtol=1e-5)
    f = np.array([[np.nan, np.inf], [1.0, 2.0]])
    out = to_grey(f)
    assert np.isnan(out[0, 0]) and np.isinf(out[0, 1]) and out.dtype == np.float32


@pytest.mark.parametrize(
    "arr",
    [
        np.zeros((4, 4), np.complex64),
        np.empty((4, 4), object),
        np.zeros((2, 4, 4, 3)),
        np.zeros((4, 4, 2)),
        np.zeros((4, 4, 5)),
        np.zeros(10),
        np.zeros((0, 4)),
    ],
)
def test_to_grey_rejects(arr):
    with pytest.raises(InputError) as ei:
        to_grey(arr)
    assert "expected" in str(ei.value)


# ---------------------------------------------------------------- read_labels


def test_read_labels_png(tmp_path):
    lab = np.zeros((30, 40), np.uint16)
    lab[1:5, 1:5] = 1
    lab[10:20, 10:30] = 300
    r = read_labels(write(tmp_path / "l16.png", lab))
    assert r.dtype == np.int32 and np.array_equal(r, lab)
    r8 = read_labels(write(tmp_path / "l8.png", (lab > 0).astype(np.uint8) * 3))
    assert r8.dtype == np.int32 and set(np.unique(r8)) == {0, 3}
    grey_as_rgb = np.dstack([lab.astype(np.uint8)] * 3)  # channels identical -> accepted
    assert np.array_equal(read_labels(write(tmp_path / "g.png", grey_as_rgb)), lab.astype(np.uint8))


def test_read_labels_rejects_colour_and_float(tmp_path):
    p = write(tmp_path / "colour.png", rgb_test_image())
    with pytest.raises(DataError) as ei:
        read_labels(p)
    assert str(p) in str(ei.value) and "single-channel integer" in str(ei.value)
    pf = write(tmp_path / "float.tif", np.ones((8, 8), np.float32))
    with pytest.raises(DataError) as ei:
        read_labels(pf)
    assert str(pf) in str(ei.value) and "integer" in str(ei.value)


def test_read_labels_rejects_negative_and_huge(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    neg = tmp_path / "neg.tif"
    tifffile.imwrite(neg, np.array([[0, -1], [2, 3]], np.int32))
    with pytest.raises(DataError, match="label ids from -1"):
        read_labels(neg)
    huge = tmp_path / "huge.tif"
    tifffile.imwrite(huge, np.array([[0, 2**32 - 1]], np.uint32))
    with pytest.raises(DataError, match="0..2147483647"):
        read_labels(huge)


# ---------------------------------------------------------------- image_kind


def test_image_kind_synthetic():
    assert image_kind(blobs()) == "fluorescence"
    assert image_kind(blobs(bright_bg=True)) == "brightfield"
    assert image_kind(np.dstack([blobs()] * 3)) == "fluorescence"  # grey stored as RGB
    alpha = np.full((64, 80), 255, np.uint8)
    assert image_kind(np.dstack([blobs(bright_bg=True)] * 3 + [alpha])) == "brightfield"
    he = np.dstack([blobs(bright_bg=True), blobs(bright_bg=True) // 2, blobs(bright_bg=True)])
    assert image_kind(he) == "stained"
    assert image_kind(blobs().astype(np.uint16) * 100) == "fluorescence"
    assert image_kind(np.zeros((8, 8))) == "fluorescence"
    assert image_kind(np.full((8, 8), np.nan)) == "fluorescence"
    # tiny colour noise (1 grey level) on a grey image is not colour
    rng = np.random.default_rng(0)
    noisy = np.dstack([blobs()] * 3).astype(np.int16) + rng.integers(0, 2, (64, 80, 3))
    assert image_kind(noisy.astype(np.uint8)) == "fluorescence"
    assert set(IMAGE_KINDS) == {"fluorescence", "brightfield", "stained"}


def test_fixture_kinds():
    samples = load_dataset(FIXTURES)
    kinds = sample_kinds(samples)
    assert sorted(kinds.values()) == sorted(IMAGE_KINDS)
    assert kinds[samples[0].id] == "fluorescence"  # 00071198...


# ---------------------------------------------------------------- NormConfig / normalize


def test_normconfig_validation_and_dict_round_trip():
    cfg = NormConfig(p_low=2, p_high=98, invert="never")
    assert cfg.p_low == 2.0 and isinstance(cfg.p_low, float)
    assert NormConfig.from_dict(cfg.to_dict()) == cfg
    assert NormConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert NormConfig.from_dict({}) == NormConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.p_low = 3.0  # type: ignore[misc]
    with pytest.raises(InputError) as ei:
        NormConfig.from_dict({"p_low": 1, "gamma": 2})
    assert "gamma" in str(ei.value) and "p_high" in str(ei.value) and "invert" in str(ei.value)
    for bad in (dict(p_low=50, p_high=50), dict(p_low=-1), dict(p_high=101), dict(invert="yes"),
                dict(p_low=float("nan")), dict(p_low="1"), dict(p_high=True)):
        with pytest.raises(InputError):
            NormConfig(**bad)
    with pytest.raises(InputError):
        NormConfig.from_dict([("p_low", 1)])  # type: ignore[arg-type]
    info = NormInfo(1.0, 2.0, True)
    assert NormInfo.from_dict(json.loads(json.dumps(info.to_dict()))) == info
    with pytest.raises(InputError):
        NormInfo.from_dict({"lo": 1})


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64])
def test_normalize_dtypes_and_range(dtype):
    img = blobs().astype(dtype)
    if np.dtype(dtype).kind == "f":
        img = img / 255.0 - 0.2
    out, info = normalize(img)
    assert out.dtype == np.float32 and out.shape == img.shape and out.flags.c_contiguous
    assert out.min() == 0.0 and out.max() == 1.0
    assert not info.inverted
    lo, hi = np.percentile(img, [1, 99.8])
    assert info.lo == pytest.approx(lo, rel=1e-5, abs=1e-6)
    assert info.hi == pytest.approx(hi, rel=1e-5, abs=1e-6)
    expected = np.clip((img.astype(np.float64) - lo) / (hi - lo), 0, 1)
    assert np.allclose(out, expected, atol=1e-5)


def test_normalize_colour_and_bool():
    rgb = np.dstack([blobs(), blobs(), blobs()])
    out, _ = normalize(rgb)
    out_g, _ = normalize(blobs())
    assert np.allclose(out, out_g, atol=1e-5)
    outb, info = normalize(blobs() > 100)
    assert set(np.unique(outb)) <= {0.0, 1.0} and not info.inverted


def test_normalize_inverts_bright_background():
    bf = blobs(bright_bg=True)
    out, info = normalize(bf)
    assert info.inverted
    nuclei = bf < 128
    assert out[nuclei].mean() > 0.8 and out[~nuclei].mean() < 0.2  # nuclei now bright
    never, info_n = normalize(bf, NormConfig(invert="never"))
    assert not info_n.inverted and np.allclose(never, 1 - out, atol=1e-6)
    always, info_a = normalize(blobs(), NormConfig(invert="always"))
    assert info_a.inverted and always[blobs() > 100].mean() < 0.2
    he = np.dstack([bf, bf // 2 + 100, bf])  # colour, bright background
    assert normalize(he)[1].inverted


def test_normalize_constant_and_empty_range():
    for img in (np.full((32, 32), 7, np.uint8), np.zeros((5, 5)), np.full((9, 9), 1e30)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out, info = normalize(img)
        assert out.dtype == np.float32 and not out.any() and info.lo == info.hi


def test_normalize_nan_inf():
    img = blobs().astype(np.float32)
    img[0, :5] = np.nan
    img[1, :5] = np.inf
    img[2, :5] = -np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, info = normalize(img)
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert not out[:3, :5].any()
    assert np.isfinite(info.lo) and np.isfinite(info.hi)
    out_nan, info_nan = normalize(np.full((8, 8), np.nan, np.float32))
    assert not out_nan.any() and info_nan.lo == 0.0


def test_normalize_rejects_bad_input():
    with pytest.raises(InputError):
        normalize(np.zeros((4, 4), np.complex128))
    with pytest.raises(InputError):
        normalize(np.zeros((4, 4)), cfg={"p_low": 1})  # type: ignore[arg-type]


def test_normalize_fixtures_make_nuclei_bright():
    for s in load_dataset(FIXTURES):
        out, info = normalize(s.image())
        lab = s.labels()
        assert out[lab > 0].mean() > out[lab == 0].mean() + 0.2, s.id
        assert info.inverted == (image_kind(s.image()) != "fluorescence")


# ---------------------------------------------------------------- Sample


def _masks(folder: Path, shape=(20, 30)) -> list[Path]:
    folder.mkdir(parents=True)
    specs = {"b.png": (slice(0, 5), slice(0, 5)), "a.png": (slice(3, 8), slice(3, 8)),
             "c.png": (slice(10, 12), slice(10, 20))}
    paths = []
    for name, sl in specs.items():
        m = np.zeros(shape, np.uint8)
        m[sl] = 255
        paths.append(write(folder / name, m))
    return paths


def test_sample_labels_from_masks(tmp_path, caplog):
    paths = _masks(tmp_path / "masks")  # written in order b, a, c
    s = Sample("x", str(tmp_path / "img.png"), mask_paths=paths)
    assert isinstance(s.image_path, Path) and s.has_labels
    with caplog.at_level(logging.DEBUG, logger="edgeseg.data"):
        lab = s.labels()
    assert lab.dtype == np.int32
    assert lab[0, 0] == 2 and lab[7, 7] == 1 and lab[11, 15] == 3  # ids in sorted name order
    assert lab[4, 4] == 2  # overlap: later mask (b.png) wins
    assert "4 mask pixels overlap" in caplog.text


def test_sample_labels_errors(tmp_path):
    s = Sample("y", tmp_path / "img.png")
    assert not s.has_labels
    with pytest.raises(DataError, match="has no labels"):
        s.labels()
    a = write(tmp_path / "a.png", np.ones((4, 4), np.uint8))
    b = write(tmp_path / "b.png", np.ones((5, 4), np.uint8))
    with pytest.raises(DataError, match="shape"):
        Sample("z", tmp_path / "img.png", mask_paths=(a, b)).labels()


# ---------------------------------------------------------------- load_dataset


def test_load_layout_a(tmp_path, caplog):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    write(tmp_path / "images" / "b.png", blobs())
    write(tmp_path / "images" / "a.tif", blobs())
    write(tmp_path / "images" / "c.jpg", blobs())
    (tmp_path / "images" / "notes.txt").write_text("x")
    (tmp_path / "images" / ".hidden.png").write_bytes(b"")
    write(tmp_path / "labels" / "a.png", (blobs() > 100).astype(np.uint8))
    write(tmp_path / "labels" / "b.tiff", (blobs() > 100).astype(np.uint16))
    write(tmp_path / "labels" / "orphan.png", np.zeros((4, 4), np.uint8))
    with caplog.at_level(logging.WARNING, logger="edgeseg.data"):
        samples = load_dataset(tmp_path)
    assert sample_ids(samples) == ["a", "b", "c"]
    assert [s.has_labels for s in samples] == [True, True, False]
    assert samples[2].label_path is None
    assert "orphan" in caplog.text
    assert samples[1].labels().max() == 1


def test_load_layout_a_duplicate_id(tmp_path):
    (tmp_path / "images").mkdir()
    write(tmp_path / "images" / "a.png", blobs())
    write(tmp_path / "images" / "a.tif", blobs())
    with pytest.raises(DataError, match="share the id 'a'"):
        load_dataset(tmp_path)


def test_load_layout_b_and_plain_folder(tmp_path):
    kag = tmp_path / "kaggle"
    for i in ("id2", "id1"):
        (kag / i / "images").mkdir(parents=True)
        write(kag / i / "images" / f"{i}.png", blobs())
    _masks(kag / "id1" / "masks")
    samples = load_dataset(kag)
    assert sample_ids(samples) == ["id1", "id2"]
    assert len(samples[0].mask_paths) == 3 and samples[0].labels().max() == 3
    assert not samples[1].has_labels
    plain = tmp_path / "plain"
    plain.mkdir()
    write(plain / "z.png", blobs())
    write(plain / "y.tiff", blobs())
    samples = load_dataset(plain)
    assert sample_ids(samples) == ["y", "z"] and not any(s.has_labels for s in samples)


def test_load_dataset_errors(tmp_path):
    with pytest.raises(DataError) as ei:
        load_dataset(tmp_path / "missing")
    msg = str(ei.value)
    assert str(tmp_path / "missing") in msg and "does not exist" in msg
    assert "layout A" in msg and "layout B" in msg and "masks" in msg
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images found") as ei:
        load_dataset(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(ei.value)
    f = write(tmp_path / "one.png", blobs())
    with pytest.raises(DataError, match="is a file"):
        load_dataset(f)


def test_load_fixtures():
    samples = load_dataset(FIXTURES)
    assert len(samples) == 3 and all(s.has_labels for s in samples)
    counts = [len(np.unique(s.labels())) - 1 for s in samples]
    assert counts == [27, 31, 36]
    for s in samples:
        assert s.image().shape == (256, 256, 3) and s.labels().shape == (256, 256)


# ---------------------------------------------------------------- real DSB2018 data


@pytest.fixture(scope="module")
def stage1():
    root = need(STAGE1)
    samples = load_dataset(root)
    manifest = {e["id"]: e for e in json.loads((root / "manifest.json").read_text())}
    return samples, manifest


@pytest.fixture(scope="module")
def stage1_kinds(stage1):
    return sample_kinds(stage1[0])  # reads all 664 images once (~3-4 s)


def test_stage1_layout_a(stage1):
    samples, manifest = stage1
    assert len(samples) == 664 and all(s.label_path is not None for s in samples)
    assert sample_ids(samples) == sorted(manifest)
    for s in samples[::60]:
        lab = s.labels()
        e = manifest[s.id]
        assert lab.shape == (e["h"], e["w"]) and len(np.unique(lab)) - 1 == e["n_labels"]


def test_stage1_kind_counts(stage1, stage1_kinds):
    samples, manifest = stage1
    counts = collections.Counter(stage1_kinds.values())
    assert counts == {"fluorescence": 541, "brightfield": 16, "stained": 107}
    # "stained" is exactly the manifest's colour images
    assert all((stage1_kinds[i] == "stained") == (not e["grey"]) for i, e in manifest.items())


def test_stage1_split(stage1, stage1_kinds):
    samples, _ = stage1
    train, val = split_dataset(samples, 0.1, seed=0, kinds=stage1_kinds)
    assert len(train) + len(val) == 664 and not set(sample_ids(train)) & set(sample_ids(val))
    assert 60 <= len(val) <= 73
    per_kind = collections.Counter(stage1_kinds[s.id] for s in val)
    assert per_kind == {"fluorescence": 54, "stained": 11, "brightfield": 2}


def test_kaggle_layout_sample():
    root = need(KAGGLE)
    samples = load_dataset(root)
    assert len(samples) == 5 and all(s.mask_paths and s.label_path is None for s in samples)
    for s in samples:
        lab = s.labels()
        n_masks = len(list((root / s.id / "masks").glob("*.png")))
        assert len(s.mask_paths) == n_masks and len(np.unique(lab)) - 1 == n_masks
        assert lab.max() == n_masks


def test_kaggle_layout_equals_label_images():
    """The sample's masks, merged, equal the stage1_train label images exactly (the same
    community-fixed masks; no overlaps in these five images)."""
    kag = load_dataset(need(KAGGLE))
    labelled = {s.id: s for s in load_dataset(need(STAGE1))}
    for s in kag:
        other = labelled[s.id]
        assert np.array_equal(s.image(), other.image())
        assert np.array_equal(s.labels(), other.labels())


# ---------------------------------------------------------------- split_dataset / save_split


def _synthetic(n_per_kind=(50, 12, 3, 1)):
    samples, kinds = [], {}
    for kind, n in zip(("fluorescence", "stained", "brightfield", "rare"), n_per_kind):
        for i in range(n):
            sid = f"{kind[:2]}{i:03d}"
            samples.append(Sample(sid, Path(f"/nonexistent/{sid}.png")))
            kinds[sid] = kind
    return samples, kinds


def test_split_deterministic_order_independent_stratified():
    samples, kinds = _synthetic()
    train, val = split_dataset(samples, 0.1, seed=3, kinds=kinds)
    shuffled = samples[:]
    random.Random(1).shuffle(shuffled)
    assert split_dataset(shuffled, 0.1, seed=3, kinds=kinds) == (train, val)
    assert split_dataset(samples, 0.1, seed=3, kinds=kinds) == (train, val)
    assert sample_ids(train) == sorted(sample_ids(train))
    assert not set(sample_ids(train)) & set(sample_ids(val))
    assert len(train) + len(val) == len(samples)
    per_kind = collections.Counter(kinds[s.id] for s in val)
    assert per_kind == {"fluorescence": 5, "stained": 1, "brightfield": 1}  # rare (n=1) -> train
    other = split_dataset(samples, 0.1, seed=4, kinds=kinds)[1]
    assert sample_ids(other) != sample_ids(val)
    train2, val2 = split_dataset(samples, 0.5, seed=3, kinds=kinds)
    assert len(val2) == 25 + 6 + 2  # round(0.5 * 3) = 2


def test_split_computes_kinds_from_images():
    samples = load_dataset(FIXTURES)
    samples = samples + [Sample(s.id + "_b", s.image_path, s.label_path) for s in samples]
    train, val = split_dataset(samples, 0.1)
    assert len(val) == 3 and len(train) == 3  # one per kind, each kind has 2 samples


def test_split_errors():
    samples, kinds = _synthetic()
    for bad in (0, 1, 1.5, -0.1, float("nan"), True, "0.1"):
        with pytest.raises(InputError, match="val_fraction"):
            split_dataset(samples, bad, kinds=kinds)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="no entry"):
        split_dataset(samples, 0.1, kinds={})
    with pytest.raises(InputError, match="unique"):
        split_dataset(samples + samples[:1], 0.1, kinds=kinds)


def test_save_and_load_split(tmp_path):
    samples, kinds = _synthetic()
    train, val = split_dataset(samples, 0.2, seed=1, kinds=kinds)
    p = tmp_path / "sub" / "split.json"
    save_split(p, train, val, seed=1, val_fraction=0.2)
    d = load_split(p)
    assert d["train"] == sample_ids(train) and d["val"] == sample_ids(val)
    assert d["seed"] == 1 and d["val_fraction"] == 0.2
    assert [f.name for f in p.parent.iterdir()] == ["split.json"]  # no temp files left
    save_split(p, ["a"], ["b"])  # ids work too, and overwrite
    assert load_split(p)["val"] == ["b"]
    with pytest.raises(InputError, match="JSON"):
        save_split(tmp_path / "x.json", [], [], bad=object())
    with pytest.raises(DataError, match="not found"):
        load_split(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError) as ei:
        load_split(tmp_path / "bad.json")
    assert str(tmp_path / "bad.json") in str(ei.value)
    (tmp_path / "wrong.json").write_text(json.dumps({"train": ["a"], "val": "b"}))
    with pytest.raises(DataError, match="not a split file"):
        load_split(tmp_path / "wrong.json")
    (tmp_path / "both.json").write_text(json.dumps({"train": ["a"], "val": ["a"]}))
    with pytest.raises(DataError, match="both train and val"):
        load_split(tmp_path / "both.json")
