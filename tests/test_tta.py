"""edgeseg.tta: the 8 dihedral transforms invert exactly; TTA through the Segmenter."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.tta import average_dihedral, dihedral, undo_dihedral


@pytest.mark.parametrize("k", range(8))
def test_undo_inverts(k):
    a = np.arange(3 * 5 * 7).reshape(3, 5, 7)
    np.testing.assert_array_equal(undo_dihedral(dihedral(a, k), k), a)


def test_all_eight_transforms_differ():
    a = np.arange(16).reshape(4, 4)
    assert len({dihedral(a, k).tobytes() for k in range(8)}) == 8


def test_average_of_an_equivariant_map_is_the_map():
    img = np.random.default_rng(0).random((6, 9)).astype(np.float32)
    calls = []

    def probs(x):
        calls.append(x.shape)
        return np.stack([x, 1 - x]), 1

    out, tiles = average_dihedral(img, probs)
    assert len(calls) == 8 and tiles == 1
    np.testing.assert_allclose(out, np.stack([img, 1 - img]), atol=1e-6)


def test_segmenter_tta(tiny_onnx):
    pytest.importorskip("onnxruntime")
    from edgeseg import Segmenter
    from edgeseg.errors import InputError
    img = (np.random.default_rng(2).random((40, 56)) * 255).astype(np.uint8)
    plain = Segmenter(tiny_onnx, device="cpu").segment(img, probabilities=True)
    tta = Segmenter(tiny_onnx, device="cpu", tta=True).segment(img, probabilities=True)
    assert tta.labels.shape == (40, 56)
    np.testing.assert_allclose(tta.probabilities.sum(0), 1.0, atol=1e-5)
    assert not np.allclose(tta.probabilities, plain.probabilities)  # a random net is not symmetric
    with pytest.raises(InputError, match="tta"):
        Segmenter(tiny_onnx, device="cpu", tta="yes")
