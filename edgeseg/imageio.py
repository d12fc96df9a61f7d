"""Reading microscopy images and label images from disk.

PNG, TIFF and JPEG, 8/16-bit (and float TIFF), grey/RGB/RGBA. Images are decoded by OpenCV
from bytes read by numpy (so non-ASCII paths work); ``tifffile`` is a lazy fallback for TIFFs
OpenCV cannot decode. Colour arrays are always returned in **RGB** order.

The header is read before anything is decoded (:mod:`edgeseg.imageheader`): multi-page TIFFs,
complex or 2-channel TIFFs and images over the pixel budget are refused without decoding them.
The budget, :data:`DEFAULT_MAX_PIXELS` = 2**28 pixels (268 MP, e.g. 16384 x 16384), bounds the
memory a file can claim: segmenting needs about 20-25 bytes per pixel besides the image (about
6 GB at the limit, see the README), so a small file declaring 30000 x 30000 pixels is refused
in microseconds instead of exhausting memory. Raise it where the memory is there:
``read_image(path, max_pixels=...)``, ``edgeseg predict --max-pixels N`` (None / 0: no limit;
OpenCV itself decodes at most 2**30 pixels, bigger TIFFs are read with tifffile).

Physical pixel size: :func:`read_pixel_size` reads the µm per pixel an OME-TIFF (OME-XML
``PhysicalSizeX/Y``) or an ImageJ/Fiji TIFF (``unit`` and resolution tags) records, without
decoding pixels; :func:`read_image_meta` returns the image with it (:mod:`edgeseg.ometiff`).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Union

import cv2
import numpy as np

from .errors import DataError, InputError
from .imageheader import ImageHeader, read_header
from .units import PixelSize

__all__ = ["DEFAULT_MAX_PIXELS", "read_image_raw", "to_grey", "read_image", "read_labels",
           "read_pixel_size", "read_image_meta"]

PathLike = Union[str, Path]

#: Images declaring more pixels than this are refused before decoding (see the module doc).
DEFAULT_MAX_PIXELS = 2**28
_OPENCV_MAX_PIXELS = 2**30  # OpenCV's decoders refuse larger images (CV_IO_MAX_IMAGE_PIXELS)


def _truncated(buf: bytes) -> bool:
    """True for a PNG without its IEND chunk or a JPEG without an end marker after its scan."""
    if buf[:8] == b"\x89PNG\r\n\x1a\n":
        return buf.rfind(b"IEND") < 0
    if buf[:2] == b"\xff\xd8":
        return buf.rfind(b"\xff\xd9") < buf.rfind(b"\xff\xda")
    return False


def _stack_error(path: Path, what: str) -> DataError:
    return DataError(
        f"{path} is {what}; edgeseg segments 2-D images (HxW grey or HxWx3 RGB). "
        "Save one plane as its own file, e.g. "
        "tifffile.imwrite('plane.tif', tifffile.imread(path, key=0)), or pass a 2-D array."
    )


def _check_header(path: Path, head: ImageHeader, max_pixels: int | None) -> None:
    """Refuse what the header already rules out, before any pixel is decoded."""
    if head.pages > 1:
        raise _stack_error(path, f"a multi-page TIFF ({head.pages} pages)")
    if head.sample_format == "complex":
        raise DataError(f"{path} holds complex values ({head.bits}-bit complex TIFF); expected a "
                        "real-valued image. Save the magnitude as its own file, e.g. tifffile."
                        "imwrite('abs.tif', np.abs(tifffile.imread(path))).")
    if head.format == "tiff" and head.channels not in (1, 3, 4):
        plane = "[0]" if head.planar else "[..., 0]"
        raise DataError(f"{path} is a TIFF with {head.channels} channels per pixel; expected a 2-D grey "
                        "(1), RGB (3) or RGBA (4) image. Save the nuclear channel as its own file, e.g. "
                        f"tifffile.imwrite('nuclei.tif', tifffile.imread(path){plane}).")
    if max_pixels and head.pixels > max_pixels:
        raise DataError(
            f"{path} declares {head.width} x {head.height} = {head.pixels:,} pixels, over the "
            f"limit of {max_pixels:,} (max_pixels); segmenting it needs about "
            f"{head.pixels * 25 / 2**30:.0f} GB. If the machine has the memory, raise the limit "
            "(edgeseg predict --max-pixels N, read_image(path, max_pixels=N)); else crop the image.")
    if head.pixels > _OPENCV_MAX_PIXELS and head.format != "tiff":
        raise DataError(
            f"{path} declares {head.width} x {head.height} = {head.pixels:,} pixels; OpenCV decodes "
            f"{head.format.upper()} images of at most 2**30 = {_OPENCV_MAX_PIXELS:,} pixels. Split "
            "it into smaller images, or save it as a TIFF (read with tifffile).")


def _decode_tiff_fallback(buf: np.ndarray, path: Path) -> np.ndarray:
    """Decode a TIFF OpenCV could not read with tifffile (optional, imported lazily)."""
    try:
        import tifffile
    except ImportError:
        raise DataError(f"OpenCV could not decode the TIFF file {path}; expected a 2-D grey or "
                        "RGB TIFF. `pip install tifffile` reads more variants.") from None
    try:
        with tifffile.TiffFile(io.BytesIO(buf)) as tif:
            n_pages = len(tif.pages)
            arr = tif.asarray() if n_pages == 1 else None
    except Exception as exc:  # tifffile raises many exception types on corrupt files
        raise DataError(f"could not read the TIFF file {path} ({exc}); expected a valid 2-D "
                        "TIFF image. It may be corrupted or truncated: re-export it.") from None
    if arr is None:
        raise _stack_error(path, f"a multi-page TIFF ({n_pages} pages)")
    return np.asarray(arr)


def read_image_raw(path: PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image as stored: HxW (grey) or HxWx3 (RGB order, alpha dropped).

    PNG, TIFF and JPEG (8/16-bit, float TIFF) are supported; the dtype is preserved. Paths with
    non-ASCII characters work (the bytes are read by numpy, decoded by OpenCV). JPEG EXIF
    orientation is ignored (pixels as stored). The header is checked before decoding:
    ``max_pixels`` (default :data:`DEFAULT_MAX_PIXELS`; None or 0: no limit) bounds the image
    size, and multi-page, complex and 2-channel TIFFs are refused.

    Raises:
        DataError: missing, empty, corrupted or truncated file; over ``max_pixels``; unsupported
            channel count or sample type; multi-page TIFF or other 3-D stack.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"image file not found: {path}; expected an existing PNG/TIFF/JPEG "
                        "file. Check the path and the working directory.")
    if path.is_dir():
        raise DataError(f"{path} is a folder; expected an image file "
                        "(use edgeseg.data.load_dataset for a dataset folder).")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}; expected a readable image file. "
                        "Check the file permissions.") from None
    if data.size == 0:
        raise DataError(f"{path} is empty (0 bytes); expected a PNG/TIFF/JPEG image. "
                        "The file was probably not written completely: re-export it.")
    head = read_header(data)
    if head is not None:
        _check_header(path, head, max_pixels)
    is_tiff = bytes(data[:4]) in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
    if not is_tiff and _truncated(data.tobytes()):
        raise DataError(f"{path} is truncated (the end of the file is missing); expected a "
                        "complete PNG/JPEG file. Copy or re-export the file again.")
    rgb_order = False  # OpenCV returns BGR; tifffile returns RGB
    try:
        if is_tiff and head is not None and head.pixels > _OPENCV_MAX_PIXELS:
            arr, rgb_order = _decode_tiff_fallback(data, path), True
        elif is_tiff:
            ok, pages = cv2.imdecodemulti(data, cv2.IMREAD_UNCHANGED)
            if ok and len(pages) > 1:
                raise _stack_error(path, f"a multi-page TIFF ({len(pages)} pages)")
            if ok and len(pages) == 1 and pages[0] is not None:
                arr = pages[0]
            else:
                arr, rgb_order = _decode_tiff_fallback(data, path), True
        else:
            arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
            if arr is None:
                raise DataError(f"could not decode {path} ({data.size} bytes); expected a PNG, "
                                "TIFF or JPEG image. It is corrupted, truncated or not an image.")
    except cv2.error as exc:  # e.g. a header OpenCV refuses that read_header did not parse
        reason = next((ln for ln in str(exc).splitlines() if "error:" in ln), str(exc)).strip()
        raise DataError(f"could not decode {path} ({data.size} bytes); expected a PNG, TIFF or "
                        f"JPEG image within OpenCV's limits (OpenCV: {reason[:200]}).") from None
    if arr.size == 0 or arr.ndim < 2 or 0 in arr.shape[:2]:
        raise DataError(f"{path} holds an empty image (shape {arr.shape}); expected an image "
                        "with at least one pixel.")
    if arr.dtype.kind not in "buif":
        raise DataError(f"{path} holds {arr.dtype} values; expected a real-valued image "
                        "(integer or float). Save the magnitude or one component as its own file.")
    if max_pixels and arr.shape[0] * arr.shape[1] > max_pixels:  # a format read_header skips
        raise DataError(f"{path} is {arr.shape[1]} x {arr.shape[0]} pixels, over the limit of "
                        f"{max_pixels:,} (max_pixels); raise the limit (edgeseg predict "
                        "--max-pixels N, read_image(path, max_pixels=N)) or crop the image.")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = arr[:, :, :3] if rgb_order else arr[:, :, 2::-1]
    elif arr.ndim != 2:
        raise _stack_error(path, f"an array of shape {arr.shape} (expected 1, 3 or 4 channels)")
    return np.ascontiguousarray(arr)


def read_pixel_size(path: PathLike) -> PixelSize | None:
    """The pixel size (µm) recorded in an OME-TIFF or ImageJ TIFF; None for other files and for
    TIFFs that record none (or whose unit is 'pixel'). Only the header is read."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError:
        return None  # the pixel reader reports a missing or unreadable file
    if magic not in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return None
    from .ometiff import tiff_pixel_size

    return tiff_pixel_size(path)


def read_image_meta(path: PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS
                    ) -> tuple[np.ndarray, PixelSize | None]:
    """``(image as read_image_raw returns it, pixel size in µm or None)``: see
    :func:`read_pixel_size` (``image, px = read_image_meta("cells.ome.tif")``; ``px.x``, ``px.y``)."""
    arr = read_image_raw(path, max_pixels)
    return arr, read_pixel_size(path)


def to_grey(arr: np.ndarray) -> np.ndarray:
    """Convert HxW, HxWx1, HxWx3 (RGB) or HxWx4 (RGBA) to float32 HxW on the raw scale.

    Colour becomes luminance ``0.299 R + 0.587 G + 0.114 B``; alpha is dropped. No rescaling;
    NaN/inf pass through. Bool becomes 0/1.

    Raises:
        InputError: not a real-valued 2-D image (complex/object dtype, other shapes).
    """
    arr = np.asarray(arr)
    if arr.dtype.kind not in "buif":
        raise InputError(f"expected a real-valued image (bool/int/float), got dtype {arr.dtype}; "
                         "convert it, e.g. np.abs(x) for complex data.")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        out = np.ascontiguousarray(arr, dtype=np.float32)
    elif arr.ndim == 3 and arr.shape[2] in (3, 4):
        code = cv2.COLOR_RGB2GRAY if arr.shape[2] == 3 else cv2.COLOR_RGBA2GRAY
        out = cv2.cvtColor(np.ascontiguousarray(arr, dtype=np.float32), code)
    else:
        raise InputError(f"expected an image of shape HxW, HxWx1, HxWx3 (RGB) or HxWx4 (RGBA), "
                         f"got {arr.shape}; for channels-first data use np.moveaxis(x, 0, -1), "
                         "for a stack pass one 2-D plane.")
    if out.size == 0:
        raise InputError(f"expected a non-empty image, got shape {arr.shape}.")
    return out


def read_image(path: PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image as float32 HxW grey on its raw intensity scale (see :func:`to_grey`;
    ``max_pixels`` as in :func:`read_image_raw`)."""
    return to_grey(read_image_raw(path, max_pixels))


def read_labels(path: PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read a label image (0 = background, 1..N = objects) as int32 HxW.

    Accepts single-channel integer PNG/TIFF (uint8/uint16/uint32/int32...). An RGB image whose
    channels are all equal is accepted as grey.

    Raises:
        DataError: colour or float labels, negative ids, ids above the int32 range.
    """
    path = Path(path)
    raw = read_image_raw(path, max_pixels)
    if raw.ndim == 3:
        if not (raw == raw[..., :1]).all():
            raise DataError(f"{path} is a colour image; labels must be single-channel integer "
                            "images (0 = background, 1..N = objects). Save the ids as a grey "
                            "16-bit PNG or integer TIFF (palette PNGs decode to colours).")
        raw = raw[..., 0]
    if raw.dtype.kind not in "bui":
        raise DataError(f"{path} holds {raw.dtype} values; labels must be single-channel integer "
                        "images. Save them as uint16 PNG or int32/uint16 TIFF.")
    if raw.size and (raw.min() < 0 or raw.max() > np.iinfo(np.int32).max):
        raise DataError(f"{path} holds label ids from {raw.min()} to {raw.max()}; expected ids "
                        "in 0..2147483647 (0 = background). Relabel the objects.")
    return np.ascontiguousarray(raw, dtype=np.int32)
