"""edgeseg.imageio / edgeseg.imageheader: headers read before decoding, the pixel budget,
OpenCV's size limit, and TIFF variants refused with one clear line (issue 9, items 7, 8, 19)."""

from __future__ import annotations

import io
import struct
import time
import zlib

import cv2
import numpy as np
import pytest

from edgeseg import imageio
from edgeseg.cli import main
from edgeseg.errors import DataError
from edgeseg.imageheader import read_header
from edgeseg.imageio import DEFAULT_MAX_PIXELS, read_image, read_image_raw, read_labels

tifffile = pytest.importorskip("tifffile")


# ---------------------------------------------------------------- forged headers


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def forged_png(width: int, height: int) -> bytes:
    """A ~70-byte PNG whose IHDR declares width x height (a decompression bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
            + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b""))


def forged_jpeg(width: int, height: int) -> bytes:
    sof = struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + b"\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof + b"\xff\xd9"


def forged_tiff(width: int, height: int) -> bytes:
    """A little-endian classic TIFF with one IFD declaring width x height, no pixel data."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (277, 3, 1, 1)]
    ifd = struct.pack("<H", len(entries))
    ifd += b"".join(struct.pack("<HHII", *e) for e in entries) + struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd


def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every decoder fail loudly: the checks under test must come before decoding."""
    def boom(*a, **k):
        raise AssertionError("the image was decoded")
    monkeypatch.setattr(imageio.cv2, "imdecode", boom)
    monkeypatch.setattr(imageio.cv2, "imdecodemulti", boom)
    monkeypatch.setattr(imageio, "_decode_tiff_fallback", boom)


# ---------------------------------------------------------------- read_header


def _tiff_bytes(arr: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("arr, kw", [
    (np.zeros((7, 9), np.uint8), {}),
    (np.zeros((7, 9), np.uint16), {"byteorder": ">"}),
    (np.zeros((7, 9), np.int16), {"bigtiff": True}),
    (np.zeros((7, 9), np.float32), {"compression": "zlib"}),
    (np.zeros((7, 9, 3), np.uint8), {}),
    (np.zeros((7, 9, 4), np.uint16), {"photometric": "rgb", "extrasamples": ["unassalpha"]}),
    (np.zeros((7, 9), np.complex64), {}),
    (np.zeros((7, 9, 2), np.uint8), {"photometric": "minisblack", "planarconfig": "contig"}),
    (np.zeros((2, 7, 9), np.uint8), {"photometric": "minisblack", "planarconfig": "separate"}),
    (np.zeros((40, 7, 9), np.uint8), {}),
    (np.zeros((5, 7, 9), np.uint8), {"bigtiff": True, "byteorder": ">"}),
])
def test_tiff_header_matches_tifffile(arr, kw):
    data = _tiff_bytes(arr, **kw)
    head = read_header(data)
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        page = tif.pages[0]
        assert head.pages == len(tif.pages)
        assert (head.height, head.width) == (page.imagelength, page.imagewidth)
        assert head.channels == page.samplesperpixel
        assert head.bits == page.bitspersample
        assert head.planar == (page.planarconfig == 2)
    kind = {"u": "uint", "i": "int", "f": "float", "c": "complex"}[arr.dtype.kind]
    assert head.format == "tiff" and head.sample_format == kind


@pytest.mark.parametrize("ext, shape, dtype, params", [
    (".png", (7, 9), np.uint8, []), (".png", (7, 9, 3), np.uint16, []),
    (".png", (7, 9, 4), np.uint8, []), (".jpg", (7, 9), np.uint8, []),
    (".jpg", (7, 9, 3), np.uint8, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
])
def test_png_and_jpeg_headers(ext, shape, dtype, params):
    ok, buf = cv2.imencode(ext, np.zeros(shape, dtype), params)
    head = read_header(buf.tobytes())
    assert head.format == ext[1:].replace("jpg", "jpeg")
    assert (head.height, head.width) == shape[:2]
    assert head.channels == (shape[2] if len(shape) == 3 else 1)
    assert head.bits == np.dtype(dtype).itemsize * 8


def test_unknown_and_damaged_headers_give_none():
    assert read_header(b"BM" + b"\0" * 60) is None  # BMP: left to OpenCV
    assert read_header(b"\x89PNG\r\n\x1a\n\0\0") is None
    assert read_header(b"II*\x00\xff\xff\xff\x00") is None  # IFD offset past the end
    assert read_header(b"\xff\xd8\xff\xda\0\0") is None  # scan before any frame header


# ---------------------------------------------------------------- item 7: the pixel budget


def test_pixel_budget_refuses_a_bomb_before_decoding(tmp_path, monkeypatch):
    p = tmp_path / "bomb.png"
    p.write_bytes(forged_png(30000, 30000))
    no_decoding(monkeypatch)
    t = time.perf_counter()
    with pytest.raises(DataError) as ei:
        read_image_raw(p)
    assert time.perf_counter() - t < 1.0
    msg = str(ei.value)
    assert str(p) in msg and "30000 x 30000" in msg and "--max-pixels" in msg
    assert "\n" not in msg
    with pytest.raises(DataError, match="max_pixels"):
        read_image(p)
    with pytest.raises(DataError, match="max_pixels"):
        read_labels(p)


def test_pixel_budget_is_overridable(tmp_path):
    img = np.random.default_rng(0).integers(0, 255, (60, 80), dtype=np.uint8)
    p = tmp_path / "a.png"
    cv2.imwrite(str(p), img)
    with pytest.raises(DataError, match="4,800 pixels, over the limit of 4,799"):
        read_image_raw(p, max_pixels=60 * 80 - 1)
    for limit in (60 * 80, 0, None):
        np.testing.assert_array_equal(read_image_raw(p, max_pixels=limit), img)
    assert DEFAULT_MAX_PIXELS == 2**28


def test_tiff_stack_is_refused_without_decoding(tmp_path, monkeypatch):
    p = tmp_path / "stack.tif"
    tifffile.imwrite(p, np.zeros((400, 32, 32), np.uint8))
    no_decoding(monkeypatch)
    with pytest.raises(DataError, match=r"multi-page TIFF \(400 pages\)"):
        read_image_raw(p)


def test_predict_max_pixels_option(tmp_path, capsys):
    img = np.zeros((40, 50), np.uint8)
    cv2.circle(img, (20, 20), 8, 200, -1)
    p = tmp_path / "a.png"
    cv2.imwrite(str(p), img)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(forged_png(30000, 30000))
    out = tmp_path / "out"
    assert main(["-q", "predict", str(bomb), "-o", str(out), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    # one line for the file (with the fix), one closing line listing the failed files
    assert "--max-pixels" in err and "Traceback" not in err and len(err.strip().splitlines()) == 2
    assert main(["-q", "predict", str(p), "-o", str(out), "--device", "cpu",
                 "--max-pixels", "1999"]) == 1
    assert "over the limit of 1,999" in capsys.readouterr().err
    assert main(["-q", "predict", str(p), "-o", str(out), "--device", "cpu",
                 "--max-pixels", "2000"]) == 0
    with pytest.raises(SystemExit) as ei:
        main(["predict", str(p), "-o", str(out), "--max-pixels", "-1"])
    assert ei.value.code == 2 and "pixel count >= 0" in capsys.readouterr().err


# ---------------------------------------------------------------- item 8: OpenCV's 2**30 limit


@pytest.mark.parametrize("name, data", [
    ("png40k.png", forged_png(40000, 40000)),
    ("jpeg65k.jpg", forged_jpeg(65000, 65000)),
])
def test_headers_over_opencv_limit_are_one_clear_line(tmp_path, monkeypatch, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    no_decoding(monkeypatch)
    with pytest.raises(DataError, match="max_pixels"):  # the default budget comes first
        read_image_raw(p)
    with pytest.raises(DataError) as ei:  # no budget: OpenCV's own limit, said plainly
        read_image_raw(p, max_pixels=None)
    assert "2**30" in str(ei.value) and "TIFF" in str(ei.value) and "\n" not in str(ei.value)


def test_tiff_over_the_budget(tmp_path, monkeypatch):
    p = tmp_path / "t100k.tif"
    p.write_bytes(forged_tiff(100000, 100000))
    no_decoding(monkeypatch)
    with pytest.raises(DataError, match="100000 x 100000 = 10,000,000,000 pixels"):
        read_image_raw(p)


def test_opencv_errors_become_data_errors(tmp_path, monkeypatch):
    p = tmp_path / "a.png"
    cv2.imwrite(str(p), np.zeros((8, 8), np.uint8))

    def refuse(*a, **k):
        raise cv2.error("OpenCV(5.0.0) loadsave.cpp:79: error: (-215:Assertion failed) "
                        "pixels <= CV_IO_MAX_IMAGE_PIXELS in function 'validateInputImageSize'\n")
    monkeypatch.setattr(imageio.cv2, "imdecode", refuse)
    with pytest.raises(DataError) as ei:
        read_image_raw(p)
    assert "could not decode" in str(ei.value) and "CV_IO_MAX_IMAGE_PIXELS" in str(ei.value)
    assert "\n" not in str(ei.value)


# ---------------------------------------------------------------- item 19: TIFF variants


def test_complex_tiff_is_refused(tmp_path):
    p = tmp_path / "c.tif"
    tifffile.imwrite(p, (np.arange(64).reshape(8, 8) + 1j).astype(np.complex64))
    with pytest.raises(DataError, match="complex values") as ei:
        read_image_raw(p)
    assert "np.abs" in str(ei.value)


@pytest.mark.parametrize("planar", [False, True])
def test_two_channel_tiff_is_refused_not_cut_to_one(tmp_path, planar):
    p = tmp_path / "two.tif"
    arr = np.random.default_rng(0).integers(0, 255, (2, 8, 8) if planar else (8, 8, 2), dtype=np.uint8)
    tifffile.imwrite(p, arr, photometric="minisblack",
                     planarconfig="separate" if planar else "contig")
    with pytest.raises(DataError, match="2 channels") as ei:
        read_image_raw(p)
    assert ("imread(path)[0]" if planar else "imread(path)[..., 0]") in str(ei.value)


def test_grey_alpha_png_still_reads(tmp_path):
    """A 2-sample PNG is grey + alpha, which OpenCV expands: it stays accepted."""
    grey = np.arange(20, dtype=np.uint8).reshape(4, 5)
    raw = b"".join(b"\0" + bytes(np.dstack([row, np.full_like(row, 255)]).ravel()) for row in grey)
    p = tmp_path / "ga.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 5, 4, 8, 4, 0, 0, 0))
                  + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b""))
    out = read_image_raw(p)
    assert out.shape == (4, 5, 3) and (out == grey[..., None]).all()


def test_big_tiff_beyond_opencv_is_read_with_tifffile(tmp_path, monkeypatch):
    """A TIFF over OpenCV's limit goes to tifffile (the limit is patched down to test it)."""
    arr = np.random.default_rng(1).integers(0, 60000, (30, 40), dtype=np.uint16)
    p = tmp_path / "big.tif"
    tifffile.imwrite(p, arr)
    monkeypatch.setattr(imageio, "_OPENCV_MAX_PIXELS", 100)
    monkeypatch.setattr(imageio.cv2, "imdecodemulti", lambda *a: (_ for _ in ()).throw(
        AssertionError("OpenCV asked to decode an image over its limit")))
    np.testing.assert_array_equal(read_image_raw(p), arr)


# ---------------------------------------------------------------- physical pixel size (issue 12)


def test_read_image_meta_gives_the_ome_tiff_pixel_size(tmp_path):
    img = (np.arange(48 * 64).reshape(48, 64) % 251).astype(np.uint16)
    path = tmp_path / "cells.ome.tif"
    tifffile.imwrite(path, img, ome=True, metadata={"axes": "YX", "PhysicalSizeX": 0.325,
                                                    "PhysicalSizeXUnit": "µm", "PhysicalSizeY": 0.4,
                                                    "PhysicalSizeYUnit": "µm"})
    arr, px = imageio.read_image_meta(path)
    assert np.array_equal(arr, img) and (px.x, px.y) == (0.325, 0.4)
    assert imageio.read_pixel_size(path) == px
    assert np.array_equal(read_image(path), img.astype(np.float32))  # existing callers unchanged


def test_read_pixel_size_imagej_tiff_and_files_without_one(tmp_path):
    img = np.zeros((16, 16), np.uint8)
    tifffile.imwrite(tmp_path / "fiji.tif", img, imagej=True, resolution=(2.0, 2.0), metadata={"unit": "micron"})
    assert imageio.read_pixel_size(tmp_path / "fiji.tif").x == pytest.approx(0.5)
    tifffile.imwrite(tmp_path / "plain.tif", img)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    for name in ("plain.tif", "a.png", "missing.tif"):
        assert imageio.read_pixel_size(tmp_path / name) is None
    arr, px = imageio.read_image_meta(tmp_path / "a.png")
    assert px is None and arr.shape == (16, 16)
