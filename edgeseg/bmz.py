"""Reading a BioImage Model Zoo (bioimage.io) package back: its ONNX weights, from the zip.

``edgeseg export-bioimageio MODEL -o model.zip`` (:mod:`edgeseg.converters.bioimageio`) writes a
package whose ONNX weights carry edgeseg's model metadata (preprocessing, classes, thresholds),
so ``Segmenter("model.zip")`` and ``edgeseg predict --model model.zip`` run it with ONNX Runtime
exactly as the ``.onnx`` file it was made from. Only ``zipfile`` is needed (no YAML parser, no
bioimageio package): the weights are the one ``.onnx`` member beside ``rdf.yaml``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Union

from .errors import ModelError

__all__ = ["RDF_NAMES", "onnx_from_package", "is_package"]

RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")
_MAX_ONNX = 2**31  # protobuf's limit: a larger member is not an ONNX model edgeseg wrote

PathLike = Union[str, Path]


def is_package(path: PathLike) -> bool:
    """Whether ``path`` is a zip file (by its content, not its name)."""
    return Path(path).is_file() and zipfile.is_zipfile(path)


def onnx_from_package(path: PathLike) -> tuple[str, bytes]:
    """``(member name, bytes)`` of the ONNX weights of a bioimage.io package zip.

    Raises:
        ModelError: not a zip, no rdf.yaml (not a bioimage.io package), no or several ONNX
            weights, or a member that cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"bioimage.io package not found: {path}; expected a .zip written by "
                         "`edgeseg export-bioimageio MODEL -o model.zip`")
    fix = "export it with `edgeseg export-bioimageio MODEL -o model.zip` (it has ONNX weights)"
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if not any(n.rsplit("/", 1)[-1] in RDF_NAMES or n.endswith(".bioimageio.yaml")
                       for n in names):
                raise ModelError(f"{path} is a zip without rdf.yaml, not a bioimage.io model "
                                 f"package; {fix}")
            onnx = [i for i in zf.infolist() if i.filename.lower().endswith(".onnx")]
            if len(onnx) != 1:
                what = "no ONNX weights" if not onnx else \
                    f"{len(onnx)} ONNX files ({', '.join(i.filename for i in onnx)})"
                raise ModelError(f"{path} holds {what}; edgeseg runs a package's one ONNX weights "
                                 f"file; {fix}")
            if onnx[0].file_size > _MAX_ONNX:
                raise ModelError(f"{path}: {onnx[0].filename} declares {onnx[0].file_size:,} bytes, "
                                 f"more than an ONNX model holds; {fix}")
            return onnx[0].filename, zf.read(onnx[0])
    except zipfile.BadZipFile as exc:
        raise ModelError(f"{path} could not be read as a zip ({exc}); the package is truncated or "
                         "corrupted: copy or export it again") from None
