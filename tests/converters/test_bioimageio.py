"""edgeseg.converters.bioimageio / `edgeseg export-bioimageio` (issue 12, item 2): a BioImage Model
Zoo package of the bundled model passes bioimageio.core's own test (spec, both weights formats,
reproduction of the test output) and loads back into edgeseg."""

from __future__ import annotations

import contextlib
import io
import zipfile

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("bioimageio.spec")
core = pytest.importorskip("bioimageio.core")

from edgeseg import Segmenter  # noqa: E402
from edgeseg._resources import demo_dir  # noqa: E402
from edgeseg.cli import main  # noqa: E402
from edgeseg.converters.bioimageio import DSB2018_DOI, spec_scale_range  # noqa: E402
from edgeseg.errors import InputError  # noqa: E402
from edgeseg.imageio import read_image_raw, to_grey  # noqa: E402
from edgeseg.modelinfo import ModelInfo  # noqa: E402

FLUO = demo_dir() / "images" / "13c8ff1f49886e91c98ce795c93648ad8634c782ff57eb928ce29496b0425057.png"
BRIGHTFIELD = demo_dir() / "images" / "091944f1d2611c916b98c020bd066667e33f4639159b2a92407fe5a40788856d.png"


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """The bundled model exported through the CLI (bioimageio.core's test runs in the next test)."""
    path = tmp_path_factory.mktemp("bmz") / "edgeseg-nuclei.zip"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["-q", "export-bioimageio", "default", "-o", str(path), "--no-test"]) == 0
    assert "bioimageio.core test: skipped" in out.getvalue() and "weights onnx + torchscript" in out.getvalue()
    return path


def test_package_passes_bioimageio_core_test(package):
    summary = core.test_model(str(package))
    failed = [(d.name, [e.msg for e in d.errors]) for d in summary.details if d.status != "passed"]
    assert summary.status == "passed", failed
    reproduced = {d.name: d.status for d in summary.details if d.name.startswith("Reproduce test outputs")}
    assert reproduced == {f"Reproduce test outputs from test inputs ({w})": "passed" for w in ("onnx", "torchscript")}


def test_rdf_describes_inputs_outputs_processing_and_citation(package):
    from bioimageio.spec import load_model_description

    descr = load_model_description(str(package), perform_io_checks=False)
    assert descr.format_version.startswith("0.5.")
    info = ModelInfo.from_dict(descr.config.model_extra["edgeseg"])
    inp, out = descr.inputs[0], descr.outputs[0]
    steps = [p for p in inp.preprocessing if p.id != "ensure_dtype"]  # the spec adds dtype steps
    assert [p.id for p in steps] == ["scale_range", "clip"]
    scale, clip = steps
    assert (scale.kwargs.min_percentile, scale.kwargs.max_percentile) == (info.norm.p_low, info.norm.p_high)
    assert [str(a) for a in scale.kwargs.axes] == ["y", "x"] and (clip.kwargs.min, clip.kwargs.max) == (0, 1)
    assert [str(c) for c in out.axes[1].channel_names] == list(info.classes) == ["background", "body", "border"]
    assert any(str(c.doi) == DSB2018_DOI and "Nature Methods" in c.text for c in descr.cite)
    assert str(descr.license) == "Apache-2.0"
    with zipfile.ZipFile(package) as zf:
        names = set(zf.namelist())
        doc = zf.read("README.md").decode()
        x = np.load(io.BytesIO(zf.read("test_input.npy")))
        y = np.load(io.BytesIO(zf.read("test_output.npy")))
        cover = zf.read("cover.png")
    assert {"rdf.yaml", "weights.onnx", "weights_torchscript.pt", "cover.png"} <= names
    for phrase in ("haematoxylin", "invert", "seeded growth", f"P(body) > {info.postprocess.seed_threshold:g}"):
        assert phrase in doc
    # the test input is the real image (grey, as edgeseg reads it), the output its probabilities
    assert x.shape == (1, 1, 256, 256) and np.array_equal(x[0, 0], to_grey(read_image_raw(FLUO)))
    assert y.shape == (1, 3, 256, 256) and np.allclose(y.sum(axis=1), 1, atol=1e-4)
    import cv2

    cov = cv2.imdecode(np.frombuffer(cover, np.uint8), cv2.IMREAD_COLOR)
    assert cov.shape[1] == 2 * cov.shape[0]


def test_package_loads_back_into_edgeseg(package, tmp_path, capsys):
    img = to_grey(read_image_raw(FLUO))
    with zipfile.ZipFile(package) as zf:
        y = np.load(io.BytesIO(zf.read("test_output.npy")))
    seg = Segmenter(package, device="cpu", diameter=None)
    assert seg.backend == "onnxruntime" and seg.info.classes == ("background", "body", "border")
    got = seg.segment(img, probabilities=True)
    assert np.abs(got.probabilities - y[0]).max() < 1e-4  # edgeseg's preprocessing == the spec's here
    x = spec_scale_range(img, seg.info.norm.p_low, seg.info.norm.p_high)[None, None]
    assert np.abs(seg._backend.infer(x) - y).max() < 1e-5
    torch_labels = Segmenter("default", device="cpu", diameter=None).segment(img).labels
    assert got.count > 10 and (got.labels > 0).sum() == pytest.approx((torch_labels > 0).sum(), rel=0.01)
    out = tmp_path / "out"
    assert main(["-q", "predict", str(FLUO), "-o", str(out), "--model", str(package), "--diameter", "none"]) == 0
    import cv2

    labels = cv2.imread(str(out / f"{FLUO.name}.labels.tif"), cv2.IMREAD_UNCHANGED)
    assert labels.max() == Segmenter(package, device="cpu", diameter=None).segment(
        read_image_raw(FLUO)).count


def test_export_refuses_what_the_spec_cannot_hold(tmp_path, capsys):
    from edgeseg.converters.bioimageio import export_bioimageio

    with pytest.raises(InputError, match="bright background.*inverts"):
        export_bioimageio("default", tmp_path / "p.zip", sample=BRIGHTFIELD, test=False)
    assert main(["export-bioimageio", "default", "-o", str(tmp_path / "p.onnx")]) == 1
    err = capsys.readouterr().err
    assert "a bioimage.io package is a .zip file" in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())
