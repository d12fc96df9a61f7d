"""Image size, channels, sample type and page count from the file header, without decoding.

:func:`edgeseg.imageio.read_image_raw` checks these before decoding, so that a small file that
declares a huge image (a "decompression bomb"), a multi-page TIFF stack or a complex-valued TIFF
is refused in microseconds instead of after gigabytes of decoding. PNG (IHDR), JPEG (SOF marker)
and TIFF/BigTIFF (IFD chain; pages are counted by following it, pixel data is never read) are
understood; anything else gives ``None`` and is left to the decoder.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["ImageHeader", "read_header", "MAX_PAGES_COUNTED"]

#: Pages of a TIFF counted at most (a stack is refused either way; this bounds the walk).
MAX_PAGES_COUNTED = 100_000

_PNG = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}  # colour type -> samples (palette: RGB)
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_TIFF_SAMPLE_FORMATS = {1: "uint", 2: "int", 3: "float", 4: "other", 5: "complex", 6: "complex"}
# TIFF field type -> struct code of one value (the types the size tags use)
_TIFF_TYPES = {1: "B", 3: "H", 4: "I", 6: "b", 8: "h", 9: "i", 16: "Q", 17: "q"}


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header declares.

    Attributes:
        format: "png", "jpeg" or "tiff".
        height, width: pixels (of the first page for TIFF).
        channels: samples per pixel as stored (PNG palette: 3, grey+alpha: 2).
        pages: TIFF pages (top-level IFDs, at most :data:`MAX_PAGES_COUNTED`); 1 otherwise.
        sample_format: "uint", "int", "float", "complex" or "other".
        bits: bits per sample.
        planar: TIFF planar configuration 2 (channels stored as separate planes).
    """

    format: str
    height: int
    width: int
    channels: int = 1
    pages: int = 1
    sample_format: str = "uint"
    bits: int = 8
    planar: bool = False

    @property
    def pixels(self) -> int:
        return self.height * self.width


def read_header(buf: bytes | memoryview) -> ImageHeader | None:
    """The header of a PNG, JPEG or TIFF held in ``buf``; None for other or damaged headers."""
    buf = memoryview(buf).cast("B")
    try:
        if bytes(buf[:8]) == _PNG:
            return _png(buf)
        if bytes(buf[:2]) == b"\xff\xd8":
            return _jpeg(buf)
        if bytes(buf[:4]) in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            return _tiff(buf)
    except (struct.error, IndexError, ValueError):
        return None
    return None


def _png(buf: memoryview) -> ImageHeader | None:
    if bytes(buf[12:16]) != b"IHDR":
        return None
    width, height, bits, colour = struct.unpack_from(">IIBB", buf, 16)
    if colour not in _PNG_CHANNELS:
        return None
    return ImageHeader("png", height, width, _PNG_CHANNELS[colour], bits=bits)


def _jpeg(buf: memoryview) -> ImageHeader | None:
    i = 2
    while i + 4 <= len(buf):
        if buf[i] != 0xFF:
            return None
        marker = buf[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # no length field
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            return None
        (length,) = struct.unpack_from(">H", buf, i + 2)
        if marker in _JPEG_SOF:
            bits, height, width, components = struct.unpack_from(">BHHB", buf, i + 4)
            if height == 0 or width == 0:  # height given later (DNL marker): let OpenCV decide
                return None
            return ImageHeader("jpeg", height, width, components, bits=bits)
        i += 2 + length
    return None


def _tiff(buf: memoryview) -> ImageHeader | None:
    end = "<" if bytes(buf[:2]) == b"II" else ">"
    big = struct.unpack_from(end + "H", buf, 2)[0] == 43
    if big:
        count_fmt, entry_size, entry_fmt, inline = "Q", 20, "HHQ", 8
        offset = struct.unpack_from(end + "Q", buf, 8)[0]
    else:
        count_fmt, entry_size, entry_fmt, inline = "H", 12, "HHI", 4
        offset = struct.unpack_from(end + "I", buf, 4)[0]
    tags: dict[int, int] = {}
    pages, seen = 0, set()
    while offset and offset not in seen and pages < MAX_PAGES_COUNTED:
        seen.add(offset)
        (n,) = struct.unpack_from(end + count_fmt, buf, offset)
        first = offset + struct.calcsize(count_fmt)
        if pages == 0:  # the tags of the first page
            for k in range(n):
                pos = first + k * entry_size
                tag, typ, count = struct.unpack_from(end + entry_fmt, buf, pos)
                if tag in (256, 257, 258, 277, 284, 339) and typ in _TIFF_TYPES and count:
                    code = _TIFF_TYPES[typ]
                    at = pos + entry_size - inline
                    if count * struct.calcsize(code) > inline:  # the values live elsewhere
                        at = struct.unpack_from(end + ("Q" if big else "I"), buf, at)[0]
                    tags[tag] = struct.unpack_from(end + code, buf, at)[0]
        pages += 1
        try:
            (offset,) = struct.unpack_from(end + ("Q" if big else "I"), buf, first + n * entry_size)
            if offset:
                struct.unpack_from(end + count_fmt, buf, offset)  # a readable next page?
        except struct.error:  # a damaged chain: count the pages read so far
            break
    if 256 not in tags or 257 not in tags:
        return None
    return ImageHeader("tiff", tags[257], tags[256], channels=tags.get(277, 1), pages=pages,
                       sample_format=_TIFF_SAMPLE_FORMATS.get(tags.get(339, 1), "other"),
                       bits=tags.get(258, 1), planar=tags.get(284, 1) == 2)
