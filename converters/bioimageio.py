"""``export_bioimageio``: an edgeseg model as a BioImage Model Zoo (bioimage.io) package.

    from edgeseg.converters import export_bioimageio
    export_bioimageio("default", "edgeseg-nuclei.zip")     # or a .pt checkpoint

The zip holds ``rdf.yaml`` (model description, spec format 0.5, built and validated with
``bioimageio.spec``), ONNX weights (with edgeseg's metadata, so ``Segmenter("pkg.zip")`` runs
them) and TorchScript weights, a test input and the matching output (``.npy``, from a real
image), a cover image, ``README.md`` (inputs, the 3 classes, edgeseg's post-processing) and the
citation of the DSB2018 data. Before the zip is written in place, ``bioimageio.core`` tests it
(the spec, every weights format, and that each reproduces the test output); a package that does
not pass is not written.

What the spec can and cannot say (see :func:`documentation`): the input is one grey channel of
bright nuclei on a dark background, scaled by the spec's ``scale_range`` (the ``p_low`` /
``p_high`` percentiles of each image, as edgeseg's NormConfig) then ``clip`` to [0, 1]; the
output is the 3 class probabilities (background, body, border). edgeseg's bright-background
inversion and haematoxylin colour deconvolution have no spec operation: a package user gives
fluorescence-like input (bright-field: inverted; H&E: the haematoxylin channel). The instance
labels come from edgeseg's seeded growth, which the spec has no operation for either: it is
described in the README and its thresholds are in ``config.edgeseg``.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

from edgeseg._atomic import atomic_open
from edgeseg._version import __version__
from edgeseg.errors import BackendUnavailableError, DataError, InputError, ModelError
from edgeseg.modelinfo import ModelInfo

from .onnx_export import _load, _require, _softmaxed, export_onnx

__all__ = ["export_bioimageio", "BioimageioReport", "spec_scale_range", "documentation",
           "DSB2018_DOI", "INPUT_ID", "OUTPUT_ID"]

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
INPUT_ID, OUTPUT_ID = "image", "probabilities"
DSB2018_DOI = "10.1038/s41592-019-0612-7"
DSB2018_TEXT = ("Caicedo, J.C. et al. Nucleus segmentation across imaging experiments: the 2018 "
                "Data Science Bowl. Nature Methods 16, 1247-1253 (2019).")
EPS = 1e-6  # the spec's scale_range eps (its default)
MAX_TEST_SIDE = 256  # the test tensors are a crop of the sample image at most this large
_DEMO_SAMPLE = "13c8ff1f49886e91c98ce795c93648ad8634c782ff57eb928ce29496b0425057.png"  # fluorescence


@dataclass(frozen=True)
class BioimageioReport:
    """What :func:`export_bioimageio` wrote and how the package fared in bioimageio.core's test."""

    path: Path
    weights: tuple[str, ...]
    format_version: str
    test_status: str  # "passed", or "skipped" (test=False)
    size_bytes: int
    max_abs_diff: float  # edgeseg's Segmenter vs the package's test output, on the test input


def _spec() -> Any:
    try:
        import bioimageio.spec  # noqa: F401
        from bioimageio.spec.model import v0_5
    except ImportError as exc:
        raise BackendUnavailableError(
            f"exporting a bioimage.io package needs bioimageio.spec and bioimageio.core ({exc}); "
            "install them with: pip install 'edgeseg[bioimageio]'") from None
    return v0_5


def spec_scale_range(x: np.ndarray, p_low: float, p_high: float) -> np.ndarray:
    """The spec's ``scale_range`` over the spatial axes of one image, then ``clip`` to [0, 1]:
    ``clip((x - q(p_low)) / (q(p_high) - q(p_low) + eps), 0, 1)`` (float32)."""
    lo, hi = np.percentile(x, (p_low, p_high))
    return np.clip((x - lo) / (hi - lo + EPS), 0.0, 1.0).astype(np.float32)


def _sample_intensity(path: Path, info: ModelInfo) -> np.ndarray:
    """The package-input intensity of a sample image: grey, or the haematoxylin channel of a
    stained image where the model's NormConfig deconvolves colour. Bright-background grey images
    (which edgeseg inverts, the spec cannot) are refused."""
    from edgeseg.data import _intensity, normalize
    from edgeseg.imageio import read_image_raw

    raw = read_image_raw(path)
    grey, stained = _intensity(raw, info.norm)
    if normalize(raw, info.norm)[1].inverted:
        raise InputError(f"{path} has a bright background, which edgeseg inverts before the network "
                         "and the bioimage.io spec cannot express; give a fluorescence image (bright "
                         "nuclei on a dark background) as --sample")
    log.info("sample %s: %s intensity", path, "haematoxylin" if stained else "grey")
    return np.ascontiguousarray(grey, dtype=np.float32)


def _crop(x: np.ndarray, multiple: int) -> np.ndarray:
    """The centre crop of at most MAX_TEST_SIDE px per side, sides multiples of ``multiple``."""
    h, w = (min(MAX_TEST_SIDE, d) // multiple * multiple for d in x.shape)
    if h == 0 or w == 0:
        raise InputError(f"the sample image is {x.shape[1]} x {x.shape[0]} px; the test input needs at "
                         f"least {multiple} x {multiple} px: give a larger --sample image")
    y0, x0 = (x.shape[0] - h) // 2, (x.shape[1] - w) // 2
    return np.ascontiguousarray(x[y0:y0 + h, x0:x0 + w])


def _torchscript(ckpt: Any, dest: Path) -> None:
    torch = _require("torch", "train")
    from edgeseg.model import fold_batchnorm

    net = _softmaxed(fold_batchnorm(ckpt.build_model()), torch).eval()
    example = torch.zeros(1, 1, 64, 64)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings and TorchScript's deprecation notice
        traced = torch.jit.trace(net, example, check_trace=False)
        torch.jit.save(traced, str(dest))


def _cover(grey: np.ndarray, labels: np.ndarray, dest: Path) -> None:
    """Image and outlines side by side (2:1, as bioimage.io shows covers), PNG."""
    import cv2

    from edgeseg.viz import overlay, to_display

    pair = np.concatenate([to_display(grey), overlay(grey, labels, ids=False)], axis=1)
    ok, png = cv2.imencode(".png", cv2.cvtColor(pair, cv2.COLOR_RGB2BGR))
    if not ok:
        raise DataError(f"OpenCV could not encode the cover image {dest}")
    dest.write_bytes(png.tobytes())


def documentation(info: ModelInfo, shape: tuple[int, int]) -> str:
    """The package's README.md: input, output, what the spec cannot express, post-processing."""
    n, pp = info.norm, info.postprocess
    classes = ", ".join(f"{i} = {c}" for i, c in enumerate(info.classes))
    return f"""# edgeseg nuclei U-Net

Nuclei segmentation for fluorescence, bright-field and stained (H&E-like) light microscopy,
trained on the 2018 Data Science Bowl images (Caicedo et al., Nature Methods 2019). Exported by
edgeseg {__version__} (`edgeseg export-bioimageio`).

## Input `{INPUT_ID}`: batch x 1 x y x x, float32

One grey channel, **bright nuclei on a dark background**, any size whose y and x are multiples of
{info.multiple} (pad or crop to one). Preprocessing in the package (spec operations): `scale_range`
over y and x of each image, percentiles {n.p_low:g} -> 0 and {n.p_high:g} -> 1, then `clip` to [0, 1].
This is edgeseg's own normalisation (NormConfig p_low={n.p_low:g}, p_high={n.p_high:g}).

What the spec cannot express, and what the input must therefore already be:
- Fluorescence: the nuclear channel as it is.
- Bright-field grey images (dark nuclei on a bright background): **invert** them first
  (edgeseg inverts them itself: NormConfig invert="{n.invert}").
- Stained colour images (H&E and the like): give the **haematoxylin optical density** channel
  (colour deconvolution, Ruifrok & Johnston 2001; `skimage.color.rgb2hed(rgb)[..., 0]` or
  `edgeseg.stain.hematoxylin(rgb)`); edgeseg does this itself (NormConfig colour="{n.colour}").
- Nucleus size: the model was trained on nuclei of about {info.diameter:.1f} px diameter; rescale
  images whose nuclei are much smaller or larger (edgeseg does it with `diameter=`).

The test input (`test_input.npy`, {shape[0]} x {shape[1]} px) is a crop of a DSB2018 fluorescence image.

## Output `{OUTPUT_ID}`: batch x 3 x y x x, float32 in [0, 1]

Softmax class probabilities per pixel: {classes}. "border" marks the outline of a nucleus and the
pixels where two nuclei touch, so that touching nuclei are separated.

## Post-processing (edgeseg's seeded growth; no spec operation exists for it)

Instances are made from the probabilities as edgeseg does (`edgeseg.postprocess.label_instances`):
1. seeds: connected components of P(body) > {pp.seed_threshold:g};
2. foreground: 1 - P(background) > {pp.fg_threshold:g};
3. each seed grows over the foreground (at most {pp.max_grow} px), touching seeds are kept apart
   by the border class;
4. instances under {pp.min_size} px are removed{', holes are filled' if pp.fill_holes else ''}.

These thresholds are in `config.edgeseg.postprocess_config` of rdf.yaml. With edgeseg installed the
package runs end to end, labels included:

```
edgeseg predict images/ -o out/ --model this-package.zip
python -c "import edgeseg; print(edgeseg.Segmenter('this-package.zip').segment(img).labels)"
```

## Weights

ONNX (opset 17, BatchNorm folded, softmax included; carries edgeseg's metadata) and TorchScript,
both from the same checkpoint.

## Licence and citation

Licence: Apache-2.0 (edgeseg). Training data: DSB2018 (BBBC038), CC0. Cite the data:
{DSB2018_TEXT} doi:{DSB2018_DOI}
"""


def _descr(d: Path, info: ModelInfo, shape: tuple[int, int], name: str,
           opset: int) -> Any:
    """The ModelDescr (spec 0.5) of the files in ``d``."""
    import torch

    from bioimageio.spec.model.v0_5 import (Author, AxisId, BatchAxis, ChannelAxis, CiteEntry, ClipDescr,
                                            ClipKwargs, Doi, FileDescr, Identifier, InputTensorDescr,
                                            IntervalOrRatioDataDescr, LicenseId, ModelDescr,
                                            OnnxWeightsDescr, OutputTensorDescr, ParameterizedSize,
                                            ScaleRangeDescr, ScaleRangeKwargs, SizeReference,
                                            SpaceInputAxis, SpaceOutputAxis, TensorId,
                                            TorchscriptWeightsDescr, Version, WeightsDescr)

    yx = [AxisId("y"), AxisId("x")]
    m = info.multiple
    inp = InputTensorDescr(
        id=TensorId(INPUT_ID),
        description="grey, bright nuclei on a dark background (see README: invert bright-field, "
                    "haematoxylin channel of H&E)",
        axes=[BatchAxis(), ChannelAxis(channel_names=[Identifier("nuclei")]),
              SpaceInputAxis(id=AxisId("y"), size=ParameterizedSize(min=m, step=m)),
              SpaceInputAxis(id=AxisId("x"), size=ParameterizedSize(min=m, step=m))],
        test_tensor=FileDescr(source=d / "test_input.npy"),
        data=IntervalOrRatioDataDescr(type="float32"),
        preprocessing=[
            ScaleRangeDescr(kwargs=ScaleRangeKwargs(axes=yx, min_percentile=info.norm.p_low,
                                                    max_percentile=info.norm.p_high, eps=EPS)),
            ClipDescr(kwargs=ClipKwargs(min=0.0, max=1.0)),
        ],
    )
    out = OutputTensorDescr(
        id=TensorId(OUTPUT_ID),
        description="softmax class probabilities: " + ", ".join(info.classes),
        axes=[BatchAxis(), ChannelAxis(channel_names=[Identifier(c) for c in info.classes]),
              SpaceOutputAxis(id=AxisId("y"), size=SizeReference(tensor_id=TensorId(INPUT_ID),
                                                                 axis_id=AxisId("y"))),
              SpaceOutputAxis(id=AxisId("x"), size=SizeReference(tensor_id=TensorId(INPUT_ID),
                                                                 axis_id=AxisId("x")))],
        test_tensor=FileDescr(source=d / "test_output.npy"),
        data=IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
    )
    torch_version = torch.__version__.split("+")[0]
    weights = WeightsDescr(
        torchscript=TorchscriptWeightsDescr(source=d / "weights_torchscript.pt",
                                            pytorch_version=Version(torch_version)),
        onnx=OnnxWeightsDescr(source=d / "weights.onnx", opset_version=opset, parent="torchscript"),
    )
    keep = info.to_dict()
    keep["model_card"] = {k: info.model_card[k] for k in ("name", "nucleus_diameter", "created")
                          if k in info.model_card}
    return ModelDescr(
        name=name,
        description="Nuclei instance segmentation (2-D light microscopy): U-Net to background / "
                    "body / border probabilities; edgeseg's seeded growth makes the instances.",
        authors=[Author(name="edgeseg developers")],
        cite=[CiteEntry(text=DSB2018_TEXT, doi=Doi(DSB2018_DOI))],
        license=LicenseId("Apache-2.0"),
        documentation=FileDescr(source=d / "README.md"),
        covers=[FileDescr(source=d / "cover.png")],
        tags=["nuclei", "instance-segmentation", "2d", "unet", "fluorescence-light-microscopy",
              "bright-field-microscopy", "histology", "dsb2018", "onnx", "torchscript", "edgeseg"],
        version=Version(__version__),
        inputs=[inp],
        outputs=[out],
        weights=weights,
        config={"edgeseg": keep},
    )


def _core_test(path: Path) -> tuple[str, str]:
    """(status, failure details) of bioimageio.core's test of the package at ``path``."""
    try:
        from bioimageio.core import test_model
    except ImportError as exc:
        raise BackendUnavailableError(
            f"testing the package needs bioimageio.core ({exc}); install it with: pip install "
            "'edgeseg[bioimageio]', or skip the test (test=False, --no-test)") from None
    summary = test_model(str(path))
    failed = [f"{det.name}: {'; '.join(str(e.msg) for e in det.errors)[:300]}"
              for det in summary.details if det.status == "failed"]
    return str(summary.status), " | ".join(failed)


def export_bioimageio(model: Any, path: PathLike, *, sample: PathLike | None = None,
                      name: str = "edgeseg nuclei U-Net", test: bool = True,
                      opset: int = 17) -> BioimageioReport:
    """Write ``model`` (``"default"``, a ``.pt`` checkpoint or a loaded Checkpoint) as a
    bioimage.io package zip at ``path`` (atomically, after bioimageio.core's test passed).

    Args:
        sample: the image the test tensors and the cover come from (default: a DSB2018
            fluorescence image bundled with edgeseg); a centre crop of at most 256 x 256 px.
        name: the model's name in rdf.yaml.
        test: run bioimageio.core's test of the package before writing it (needs
            bioimageio.core; a package that does not pass is not written).

    Raises:
        BackendUnavailableError: bioimageio.spec/core, torch or onnx missing.
        InputError: bad ``path`` or ``sample``.
        ModelError: the package fails its test (the details are in the message).
    """
    _spec()  # bioimageio.spec present, before any work
    path = Path(path)
    if path.suffix.lower() != ".zip":
        raise InputError(f"the package path must end in .zip, got {path}; e.g. -o edgeseg-nuclei.zip")
    from edgeseg.checkpoint import Checkpoint, load_checkpoint
    from edgeseg.segmenter import Segmenter

    ckpt = model if isinstance(model, Checkpoint) else load_checkpoint(model)
    _, info = _load(ckpt)
    if sample is None:
        from edgeseg._resources import demo_dir

        sample = demo_dir() / "images" / _DEMO_SAMPLE
    test_in = _crop(_sample_intensity(Path(sample), info), info.multiple)
    with tempfile.TemporaryDirectory(prefix="edgeseg-bioimageio-") as tmp:
        d = Path(tmp)
        export_onnx(ckpt, d / "weights.onnx", opset=opset)
        _torchscript(ckpt, d / "weights_torchscript.pt")
        x = spec_scale_range(test_in, info.norm.p_low, info.norm.p_high)[None, None]
        with Segmenter(d / "weights.onnx", backend="onnxruntime", device="cpu", diameter=None) as seg:
            expected = seg._backend.infer(x)  # the network on the spec's preprocessing
            result = seg.segment(test_in, probabilities=True)  # edgeseg's own preprocessing
        diff = float(np.abs(result.probabilities - expected[0]).max())
        log.info("edgeseg Segmenter vs the package's test output: max abs diff %.3g", diff)
        np.save(d / "test_input.npy", test_in[None, None].astype(np.float32))
        np.save(d / "test_output.npy", expected.astype(np.float32))
        _cover(test_in, result.labels, d / "cover.png")
        (d / "README.md").write_text(documentation(info, test_in.shape), encoding="utf-8")
        try:
            descr = _descr(d, info, test_in.shape, name, opset)
        except ValueError as exc:  # pydantic's ValidationError: the spec refuses a field
            first = " ".join(str(exc).split())[:400]
            raise InputError(f"the bioimage.io description is not valid ({first}); check --name "
                             "(letters, digits, spaces, - and _)") from None
        from bioimageio.spec import save_bioimageio_package

        staged = d / "package.zip"
        save_bioimageio_package(descr, output_path=staged)
        status = "skipped"
        if test:
            status, failures = _core_test(staged)
            if status != "passed":
                raise ModelError(f"the bioimage.io package failed bioimageio.core's test ({status}): "
                                 f"{failures or 'see the log'}; it is not written")
        with atomic_open(path, "wb") as f, open(staged, "rb") as src:
            shutil.copyfileobj(src, f)
    return BioimageioReport(path=path, weights=("onnx", "torchscript"),
                            format_version=str(descr.format_version), test_status=status,
                            size_bytes=path.stat().st_size, max_abs_diff=diff)
