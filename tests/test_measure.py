"""edgeseg.measure: the per-instance table."""

from __future__ import annotations

import numpy as np
import pytest
from test_postprocess import _blocks_of, disc_labels

from edgeseg.errors import InputError
from edgeseg.measure import instance_table
from edgeseg.targets import encode, one_hot


def test_instance_table():
    gt = disc_labels()
    p = one_hot(encode(gt))
    image = np.arange(gt.size, dtype=np.float32).reshape(gt.shape)
    t = instance_table(gt, p, image)
    assert len(t) == 3 and list(t.id) == [1, 2, 3]
    for i, k in enumerate(t.id):
        ys, xs = np.nonzero(gt == k)
        assert t.area[i] == ys.size
        assert tuple(t.bbox[i]) == (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1)
        np.testing.assert_allclose(t.centroid[i], (ys.mean(), xs.mean()))
        np.testing.assert_allclose(t.intensity[i], image[gt == k].mean(), rtol=1e-6)
        np.testing.assert_allclose(t.score[i], 1.0)
    rows = t.rows()
    assert rows[0]["id"] == 1 and set(rows[0]) == set(t.COLUMNS)
    empty = instance_table(np.zeros((4, 4), np.int32))
    assert len(empty) == 0 and empty.rows() == []
    with pytest.raises(InputError, match="match labels"):
        instance_table(gt, p[:, :5])


def test_compact_and_huge_ids_and_dtypes():
    """Ids are found by a presence table when compact and by np.unique when not: the same
    table either way, for every integer dtype, and equal to a per-id reference."""
    rng = np.random.default_rng(3)
    base = rng.integers(0, 6, (37, 53))
    image = rng.random(base.shape)
    for dtype in (np.uint8, np.uint16, np.int32, np.uint32, np.int64, np.uint64):
        for huge in (False, True):
            lab = base.astype(dtype)
            if huge and np.iinfo(dtype).max >= 2**40:
                lab[base == 4] = 2**40
            t = instance_table(lab, image=image)
            ids = np.unique(lab[lab > 0])
            assert list(t.id) == [int(i) for i in ids] and t.id.dtype == np.int64
            for i, k in enumerate(ids):
                ys, xs = np.nonzero(lab == k)
                assert t.area[i] == ys.size
                assert tuple(t.bbox[i]) == (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1)
                np.testing.assert_allclose(t.centroid[i], (ys.mean(), xs.mean()), rtol=1e-12)
                np.testing.assert_allclose(t.intensity[i], image[lab == k].mean(), rtol=1e-12)
    strided = instance_table(base[:, ::2].astype(np.int32), image=image[:, ::2])
    assert len(strided) == len(np.unique(base[:, ::2][base[:, ::2] > 0]))


def test_table_memory_is_bounded_by_the_block(monkeypatch):
    """The table's temporaries (int64 coordinates of foreground pixels) scale with the block
    (here 16k pixels), not with the frame."""
    import tracemalloc

    import edgeseg.measure as measure

    monkeypatch.setattr(measure, "row_blocks", _blocks_of(1 << 14))

    lab = np.zeros((1500, 1500), np.int32)
    lab[:, :1000] = np.arange(1, 1501, dtype=np.int32)[:, None]  # 2/3 foreground, 1500 ids
    probs, image = np.zeros((3, *lab.shape), np.float32), lab.astype(np.float32)
    tracemalloc.start()
    try:
        t = instance_table(lab, probs, image)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(t) == 1500 and t.area.sum() == 1500 * 1000
    # a whole-frame pass holds >= 6 int64/float64 values per foreground pixel (>= 72 MB here)
    assert peak < lab.nbytes // 4, peak
