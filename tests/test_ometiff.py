"""edgeseg.ometiff: label OME-TIFFs that Fiji reads with their pixel size, and the pixel size of
OME-TIFF / ImageJ TIFF inputs (issue 12, item 3). Checked with tifffile and the OME-XML fields
Bio-Formats reads (Pixels PhysicalSizeX/Y and their units)."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import pytest

from edgeseg.imageio import read_labels
from edgeseg.ometiff import TILE, encode_labels, ome_pixel_size, tiff_pixel_size
from edgeseg.units import PixelSize

tifffile = pytest.importorskip("tifffile")
OME = "{http://www.openmicroscopy.org/Schemas/OME/2016-06}"


def _labels(h: int = 300, w: int = 520) -> np.ndarray:
    lab = np.zeros((h, w), np.int32)
    for i in range(1, 21):
        cv2.circle(lab, (25 * i, 10 + 13 * i), 9, i, -1)
    return lab


def _pixels(data: bytes) -> ET.Element:
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        assert tif.is_ome
        root = ET.fromstring(tif.ome_metadata)
    return root.find(f"{OME}Image/{OME}Pixels")


def test_label_ome_tiff_is_tiled_compressed_with_physical_size(tmp_path):
    lab = _labels()
    data = encode_labels(lab, PixelSize(x=0.65, y=0.5), name="a.png")
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        page = tif.pages[0]
        assert page.is_tiled and (page.tilelength, page.tilewidth) == (TILE, TILE)
        assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        assert page.dtype == np.uint16 and page.shape == lab.shape
        assert np.array_equal(tif.asarray(), lab)
        # ImageJ's own TIFF reader: resolution tags in pixels per centimetre
        assert page.tags["ResolutionUnit"].value == tifffile.RESUNIT.CENTIMETER
        xres = page.tags["XResolution"].value
        assert 1e4 * xres[1] / xres[0] == pytest.approx(0.65)
    px = _pixels(data)
    assert float(px.get("PhysicalSizeX")) == pytest.approx(0.65) and px.get("PhysicalSizeXUnit") == "µm"
    assert float(px.get("PhysicalSizeY")) == pytest.approx(0.5) and px.get("PhysicalSizeYUnit") == "µm"
    assert (px.get("SizeX"), px.get("SizeY"), px.get("Type")) == ("520", "300", "uint16")
    assert tiff_pixel_size(data) == PixelSize(x=0.65, y=0.5)
    path = tmp_path / "a.png.labels.tif"
    path.write_bytes(data)
    assert np.array_equal(read_labels(path), lab)  # edgeseg (OpenCV) reads it back
    assert np.array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), lab)


def test_without_pixel_size_no_physical_size_and_uint32_over_65535():
    lab = _labels(40, 40)
    lab[5:10, 5:10] = 70000
    data = encode_labels(lab)
    px = _pixels(data)
    assert px.get("PhysicalSizeX") is None and px.get("Type") == "uint32"
    assert tiff_pixel_size(data) is None
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        assert np.array_equal(tif.asarray(), lab)


def test_reads_imagej_tiff_pixel_size():
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.zeros((8, 8), np.uint16), imagej=True, resolution=(1 / 0.325, 1 / 0.325),
                     metadata={"unit": "um"})
    assert tiff_pixel_size(buf.getvalue()).x == pytest.approx(0.325)
    buf = io.BytesIO()  # Fiji's "micron" with nm-sized pixels written in nm
    tifffile.imwrite(buf, np.zeros((8, 8), np.uint16), imagej=True, resolution=(1 / 250, 1 / 500),
                     metadata={"unit": "nm"})
    got = tiff_pixel_size(buf.getvalue())
    assert (got.x, got.y) == pytest.approx((0.25, 0.5))


def test_plain_tiff_resolution_is_not_a_pixel_size():
    buf = io.BytesIO()  # 72 dpi: what most software writes, whatever the optics
    tifffile.imwrite(buf, np.zeros((8, 8), np.uint8), resolution=(72, 72), resolutionunit="INCH")
    assert tiff_pixel_size(buf.getvalue()) is None
    assert tiff_pixel_size(b"not a tiff") is None


def test_ome_units_other_than_µm_and_missing_y():
    xml = ('<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Image ID="Image:0">'
           '<Pixels ID="Pixels:0" PhysicalSizeX="325" PhysicalSizeXUnit="nm"/></Image></OME>')
    assert ome_pixel_size(xml) == PixelSize(0.325, 0.325)
    assert ome_pixel_size(xml.replace('PhysicalSizeXUnit="nm"', 'PhysicalSizeXUnit="pixel"')) is None
    assert ome_pixel_size("<OME") is None
