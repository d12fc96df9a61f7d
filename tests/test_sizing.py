"""edgeseg.sizing and Segmenter(diameter=...): zoom rules, consensus estimate, labels at the
frame's own size, calibrate_size; real-model checks on real DSB2018 images."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgeseg.errors import InputError
from edgeseg.postprocess import PostprocessConfig
from edgeseg.sizing import (ENLARGE_AIM, KEEP_RANGE, TRUST_BAND, check_diameter, estimate_diameter,
                            instance_diameters, resize_probabilities, scaled_postprocess,
                            zoom_for)


def disc_labels(h, w, r, spacing):
    yy, xx = np.mgrid[:h, :w]
    lab = np.zeros((h, w), np.int32)
    k = 0
    for cy in range(spacing // 2, h - r, spacing):
        for cx in range(spacing // 2, w - r, spacing):
            k += 1
            lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = k
    return lab


@pytest.mark.parametrize("bad", [0, -3, float("nan"), float("inf"), "big", True, [20]])
def test_check_diameter_rejects(bad):
    with pytest.raises(InputError, match="diameter must be"):
        check_diameter(bad)


def test_check_diameter_accepts():
    assert check_diameter(None) is None and check_diameter("auto") == "auto"
    assert check_diameter(30) == 30.0 and check_diameter("12.5") == 12.5


def test_zoom_for_keeps_in_range_and_clamps():
    d = 17.8
    assert zoom_for(d, d) == 1.0
    assert zoom_for(d, d / KEEP_RANGE[1] * 1.001) == 1.0  # just inside: untouched
    assert zoom_for(d, d * KEEP_RANGE[0] * 1.001) == 1.0
    assert zoom_for(d, d / KEEP_RANGE[0] * 1.01) < KEEP_RANGE[0]  # just outside: shrunk
    # enlarging aims at ENLARGE_AIM of the training diameter; what that leaves in range stays 1
    edge = KEEP_RANGE[1] / ENLARGE_AIM
    assert zoom_for(d, d / (edge * 0.99)) == 1.0 and zoom_for(d, d / KEEP_RANGE[1] / 1.01) == 1.0
    assert zoom_for(d, d / (edge * 1.01)) == pytest.approx(KEEP_RANGE[1] * 1.01)
    assert zoom_for(d, 4 * d) == pytest.approx(0.25)
    assert zoom_for(d, d / 3) == pytest.approx(3.0 * ENLARGE_AIM)
    assert zoom_for(d, 1e6) == pytest.approx(1 / 16) and zoom_for(d, 1e-3) == 4.0


def test_instance_diameters_of_discs():
    lab = disc_labels(200, 200, 10, 40)
    d = instance_diameters(lab)
    assert d.size == int(lab.max())
    assert np.allclose(d, 20.0, atol=1.0)


def test_scaled_postprocess_and_probabilities():
    pp = PostprocessConfig(min_size=32, max_grow=64)
    assert scaled_postprocess(pp, 1.0) is pp
    half = scaled_postprocess(pp, 0.5)
    assert half.min_size == 128 and half.max_grow == 128
    p = np.random.default_rng(0).dirichlet([1, 1, 1], size=(20, 30)).transpose(2, 0, 1)
    big = resize_probabilities(p.astype(np.float32), (40, 60))
    assert big.shape == (3, 40, 60)
    np.testing.assert_allclose(big.sum(0), 1.0, atol=1e-5)


def test_estimate_prefers_the_zoom_nearest_the_training_size():
    # Huge nuclei (d = 80) that the network over-splits at zoom 1 (it "sees" d = 30) and at 1/2
    # (d = 30 again): the 1/4 zoom sees them at 20 px, nearest 17.8, and gives 80.
    seen = {1.0: disc_labels(400, 400, 15, 40), 0.5: disc_labels(200, 200, 15, 40),
            0.25: disc_labels(100, 100, 10, 30)}
    est = estimate_diameter(lambda z: seen[z], 17.8)
    assert est.zoom == 0.25 and est.diameter == pytest.approx(80, rel=0.08)
    # typical nuclei: zoom 1 is in band and final; the smaller zooms are not computed
    seen = {1.0: disc_labels(300, 300, 9, 30)}
    est = estimate_diameter(lambda z: seen[z], 17.8)
    assert est.zoom == 1.0 and est.diameter == pytest.approx(19, rel=0.1)
    assert list(est.per_zoom) == [1.0]
    # large nuclei at zoom 1 (out of band); too few nuclei at the small zooms are ignored
    seen = {1.0: disc_labels(300, 300, 15, 40), 0.5: disc_labels(60, 60, 8, 40),
            0.25: np.zeros((75, 75), np.int32)}
    est = estimate_diameter(lambda z: seen[z], 17.8)
    assert est.zoom == 1.0 and est.diameter == pytest.approx(30, rel=0.1)
    assert math.isnan(est.per_zoom[0.25][1]) and math.isnan(est.per_zoom[0.5][1])
    assert estimate_diameter(lambda z: np.zeros((10, 10), np.int32), 17.8).diameter is None


def test_estimate_trusts_zoom_one_in_band_and_skips_smaller_zooms():
    # Bright-field clumps: normal nuclei (d = 16) at zoom 1, merged into training-sized blobs at
    # 1/4 (d = 19 there, "76 px"). Zoom 1 is within TRUST_BAND: it is final, 1/2 and 1/4 never run.
    asked = []
    seen = {1.0: disc_labels(300, 300, 8, 30), 0.25: disc_labels(80, 80, 9, 20)}

    def labels_at(z):
        asked.append(z)
        return seen[z]

    est = estimate_diameter(labels_at, 17.8)
    assert asked == [1.0] and est.zoom == 1.0 and est.diameter == pytest.approx(16, rel=0.1)
    assert TRUST_BAND[0] < 16 / 17.8 < TRUST_BAND[1]


def test_estimate_enlarges_frames_whose_nuclei_look_small():
    """Tiny nuclei (6 px): zoom 1 finds too few (they fall under min_size) -> zoom 2 reads 12 px
    (still small) -> zoom 4 reads 24 px; 4 is nearest the training size."""
    asked = []
    seen = {1.0: disc_labels(30, 50, 3, 20), 2.0: disc_labels(400, 400, 6, 20),
            4.0: disc_labels(800, 800, 12, 40), 0.5: disc_labels(100, 100, 2, 20),
            0.25: np.zeros((50, 50), np.int32)}

    def labels_at(z):
        asked.append(z)
        return seen[z]

    est = estimate_diameter(labels_at, 17.8)
    assert asked == [1.0, 2.0, 4.0, 0.5, 0.25]  # too few at zoom 1: both ways
    assert est.zoom == 4.0 and est.diameter == pytest.approx(6, rel=0.1)
    # small but not tiny (10 px at zoom 1): zoom 2 reaches the band and stops the search
    asked.clear()
    seen = {1.0: disc_labels(300, 300, 5, 20), 2.0: disc_labels(600, 600, 10, 40)}
    est = estimate_diameter(labels_at, 17.8)
    assert asked == [1.0, 2.0] and est.zoom == 2.0  # never shrunk: clumps would pass there
    assert est.diameter == pytest.approx(10, rel=0.1)
    # a little below the band (12.4 px; the frame is kept as it is): read downwards as before
    asked.clear()
    seen = {1.0: disc_labels(300, 300, 6, 20), 0.5: disc_labels(150, 150, 3, 20),
            0.25: np.zeros((75, 75), np.int32)}
    est = estimate_diameter(labels_at, 17.8)
    assert asked == [1.0, 0.5, 0.25] and est.zoom == 1.0


def test_estimate_window_caps_enlarged_frames():
    from edgeseg.sizing import MAX_ESTIMATE_PIXELS, estimate_window
    img = np.zeros((1024, 1536), np.uint8)
    assert estimate_window(img, 1.0) is img and estimate_window(img, 0.5) is img
    win = estimate_window(img, 4.0)
    assert win.shape[0] * win.shape[1] * 16 <= MAX_ESTIMATE_PIXELS and min(win.shape) >= 256
    assert estimate_window(img[:64, :64], 4.0).shape == (64, 64)


# ----------------------------------------------------------------------------- Segmenter


@pytest.fixture(scope="module")
def seg_tiny(tiny_onnx):
    pytest.importorskip("onnxruntime")
    from edgeseg import Segmenter
    return Segmenter(tiny_onnx, device="cpu")


def test_segmenter_diameter_labels_at_frame_size(tiny_onnx):
    pytest.importorskip("onnxruntime")
    from edgeseg import Segmenter
    img = (np.random.default_rng(0).random((70, 90)) * 255).astype(np.uint8)
    for diameter in (None, 17.8, 60.0, 5.0, "auto"):
        seg = Segmenter(tiny_onnx, device="cpu", diameter=diameter)
        r = seg.segment(img, probabilities=True)
        assert r.labels.shape == (70, 90) and r.probabilities.shape == (3, 70, 90)
        np.testing.assert_allclose(r.probabilities.sum(0), 1.0, atol=1e-4)
        if diameter in (None, 17.8):
            assert r.zoom == 1.0
        if diameter == 60.0:
            assert r.zoom == pytest.approx(17.8 / 60)
    with pytest.raises(InputError, match="diameter must be"):
        Segmenter(tiny_onnx, device="cpu", diameter=-1)


def test_in_range_diameter_gives_exactly_the_unscaled_result(tiny_onnx):
    pytest.importorskip("onnxruntime")
    from edgeseg import Segmenter
    img = (np.random.default_rng(1).random((64, 64)) * 255).astype(np.uint8)
    a = Segmenter(tiny_onnx, device="cpu", diameter=None).segment(img, probabilities=True)
    b = Segmenter(tiny_onnx, device="cpu", diameter=20).segment(img, probabilities=True)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-6)


def test_calibrate_size_errors_without_nuclei():
    pytest.importorskip("torch")
    from edgeseg import Segmenter
    seg = Segmenter("default", device="cpu", diameter="auto")
    with pytest.raises(InputError, match="calibrate_size"):
        seg.calibrate_size([np.zeros((64, 64), np.uint8)])


def test_size_estimate_reads_instances_before_the_confidence_filter(stage1_train):
    """Which instances the confidence filter keeps does not move the size estimate (its rules
    were set on every instance the network proposes)."""
    pytest.importorskip("torch")
    from edgeseg import Segmenter
    from edgeseg.data import load_dataset
    sample = {s.id: s for s in load_dataset(stage1_train)}[
        "13f2bec0a24c70345372febb14c4352877b1b6c1b01896246048e83c345c0914"]  # stained, large nuclei
    image = sample.image()
    estimates = {(c, w): Segmenter("default", device="cpu", min_confidence=c,
                                   border_weight=w).estimate_size(image)
                 for c, w in ((0.0, 1.0), (0.8, 0.75), (0.99, 0.0))}
    assert len({e.diameter for e in estimates.values()}) == 1, estimates
    assert next(iter(estimates.values())).diameter > 30  # nuclei far above the training size
    # the filter itself still applies to the labels
    few = Segmenter("default", device="cpu", min_confidence=0.99, border_weight=0.0).segment(image)
    assert few.count < Segmenter("default", device="cpu", min_confidence=0.0).segment(image).count


def _zoomed_real(sample, zoom):
    from edgeseg.evaluate import zoom_pair
    return zoom_pair(sample.image(), sample.labels(), zoom)


@pytest.mark.slow
def test_auto_estimates_real_nucleus_size_across_zooms(stage1_train):
    """The bundled model's auto estimate follows a real image rescaled by 0.5x and 2x."""
    pytest.importorskip("torch")
    from edgeseg import Segmenter
    from edgeseg.data import load_dataset
    sample = {s.id: s for s in load_dataset(stage1_train)}[
        "0ea221716cf13710214dcd331a61cea48308c3940df1d28cfc7fd817c83714e1"]
    seg = Segmenter("default", device="cpu")
    true_d = float(np.median(instance_diameters(sample.labels())))
    for zoom in (0.5, 1.0, 2.0):
        img, _ = _zoomed_real(sample, zoom)
        est = seg.estimate_size(img)
        assert est.diameter == pytest.approx(true_d * zoom, rel=0.35), (zoom, est)
    seg.calibrate_size([_zoomed_real(sample, 2.0)[0]])
    assert seg.diameter == pytest.approx(2 * true_d, rel=0.35)
