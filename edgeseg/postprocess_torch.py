"""Instance labelling on the device: :func:`edgeseg.postprocess.label_instances` in torch.

The same rules, step by step, with torch operations only, so that on a CUDA device only the
label image (and the instance table) comes back to the host:

1. foreground ``P(background) < 1 - fg_threshold``; holes (background components, 4-connected,
   that touch no image edge) filled;
2. seeds: 8-connected components of ``P(body) > seed_threshold`` inside the foreground;
3. growth: at most ``max_grow`` steps, each giving every foreground pixel still unlabelled the
   largest label among its 8 neighbours (3x3 dilation that never overwrites);
4. foreground no seed reached: 8-connected components of their own;
5. instances under ``min_size`` px (or under ``min_confidence``: the mean of ``P(body) +
   border_weight * P(border)``) removed, ids renumbered 1..N.

Connected components: every pixel starts with its own flat index; each round takes the minimum
over the neighbourhood (separable 3x3 minimum for 8-connectivity, the 4 neighbours for
4-connectivity) and then jumps pointers (``L = L[L]``, each pixel's label becomes its label's
label), which halves path lengths, until nothing changes. The label of a component is then the
flat index of its first pixel in raster order, so numbering components by that index gives the
raster order :func:`cv2.connectedComponents` numbers them in: ids, and therefore the growth's
"largest label wins" ties, are those of the CPU path. Tests compare both on real images.

Works on CPU and CUDA tensors alike (float32 or float16 probabilities).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .errors import InputError
from .postprocess import InstanceTable, PostprocessConfig

__all__ = ["label_instances_torch", "instance_table_torch"]

log = logging.getLogger(__name__)

_CHECK_EVERY = 4  # growth steps between convergence checks (each check is a device sync)


def _torch() -> Any:
    import torch

    return torch


def _nb(x: Any, op: Any, dims: tuple[int, ...]) -> Any:
    """``op`` (torch.minimum / torch.maximum) of each pixel and its two neighbours along each
    of ``dims`` in turn (rows then columns: the 3 x 3 neighbourhood); the image edge is left out."""
    for dim in dims:
        src, out = x, x.clone()
        n = x.shape[dim]
        if n > 1:
            op(out.narrow(dim, 1, n - 1), src.narrow(dim, 0, n - 1), out=out.narrow(dim, 1, n - 1))
            op(out.narrow(dim, 0, n - 1), src.narrow(dim, 1, n - 1), out=out.narrow(dim, 0, n - 1))
        x = out
    return x


def _cross_min(x: Any) -> Any:
    """Minimum over each pixel and its 4 neighbours."""
    torch = _torch()
    return torch.minimum(_nb(x, torch.minimum, (0,)), _nb(x, torch.minimum, (1,)))


def _compress(parent: Any) -> Any:
    """Pointer jumping until every entry points at its root (a few gathers: depth halves)."""
    torch = _torch()
    while True:
        up = parent[parent]
        if torch.equal(up, parent):
            return parent
        parent = up


def components(mask: Any, connectivity: int = 8) -> Any:
    """Connected components of a bool H x W tensor: each pixel of ``mask`` gets the flat index of
    its component's first pixel (raster order); pixels outside get ``H * W``.

    Label-equivalence rounds: every root is hooked onto the smallest root among its pixels'
    neighbourhoods (a scatter-min, so trees only ever point to smaller indices), then the trees
    are compressed; a handful of rounds on real images.
    """
    torch = _torch()
    h, w = mask.shape
    n = h * w
    flat_mask = mask.reshape(-1)
    # int32 labels (half the memory traffic of int64): images up to 2**31 - 1 pixels
    parent = torch.arange(n + 1, device=mask.device, dtype=torch.int32)  # n: the sentinel
    parent[:n][~flat_mask] = n
    while True:
        parent = parent[parent]  # two jumps per round; the trees are compressed fully only
        parent = parent[parent]  # when no hook is left (the labels then are the roots)
        labels = parent[:n].view(h, w)
        nb = _nb(labels, torch.minimum, (0, 1)) if connectivity == 8 else _cross_min(labels)
        nb = nb.reshape(-1)
        hook = flat_mask & (nb < parent[:n])
        if not bool(hook.any()):
            full = _compress(parent)
            if torch.equal(full, parent):
                return labels
            parent = full
            continue
        parent.scatter_reduce_(0, parent[:n][hook].long(), nb[hook], reduce="amin")


def _fill_holes(fg: Any) -> Any:
    """Foreground with enclosed background (4-connected components touching no edge) filled."""
    torch = _torch()
    bg = ~fg
    if not bool(bg.any()):
        return fg
    roots = components(bg, connectivity=4)
    h, w = fg.shape
    edge = torch.cat([roots[0], roots[-1], roots[:, 0], roots[:, -1]]).long()
    outside = torch.zeros(h * w + 1, dtype=torch.bool, device=fg.device)
    outside[edge] = True
    outside[h * w] = True  # foreground pixels' label
    return fg | ~outside[roots.long()]


def _number(roots: Any, mask: Any, first: int) -> tuple[Any, int]:
    """int32 ids ``first, first+1, ...`` for the components, 0 outside ``mask``; and their number.

    The order is that of :func:`cv2.connectedComponents` (block-based scan): by the first 2 x 2
    block, in raster order of blocks, that holds a pixel of the component (two 8-connected
    components never first appear in the same block).
    """
    torch = _torch()
    h, w = mask.shape
    n = h * w
    ys = torch.arange(h, device=mask.device).div(2, rounding_mode="floor")[:, None]
    xs = torch.arange(w, device=mask.device).div(2, rounding_mode="floor")[None, :]
    block = (ys * ((w + 1) // 2) + xs).reshape(-1)
    flat, on = roots.reshape(-1), mask.reshape(-1)
    key = torch.full((n + 1,), n, dtype=torch.int64, device=mask.device)
    key.scatter_reduce_(0, flat[on].long(), block[on], reduce="amin")
    reps = torch.unique(flat[on]).long()  # the roots, each with the first block of its component
    order = torch.argsort(key[reps])
    rank = torch.zeros(n + 1, dtype=torch.int32, device=mask.device)
    rank[reps[order]] = torch.arange(first, first + reps.numel(), dtype=torch.int32,
                                     device=mask.device)
    return torch.where(mask, rank[roots], torch.zeros((), dtype=torch.int32, device=mask.device)), \
        int(reps.numel())


def _grow(labels: Any, todo: Any, max_grow: int) -> tuple[Any, Any]:
    """Grow ``labels`` into ``todo`` as the CPU path does; returns (labels, todo left)."""
    torch = _torch()
    steps = 0
    while steps < max_grow:
        before = todo.sum()
        for _ in range(min(_CHECK_EVERY, max_grow - steps)):
            grown = _nb(labels, torch.maximum, (0, 1))
            labels = torch.where(todo, grown, labels)
            todo = todo & (labels == 0)
            steps += 1
        left = todo.sum()
        if bool((left == 0) | (left == before)):  # done, or nothing reachable is left
            break
    return labels, todo


def _check_probs(probs: Any) -> Any:
    torch = _torch()
    if not isinstance(probs, torch.Tensor):
        raise InputError(f"probs must be a torch tensor (3 x H x W), got {type(probs).__name__}; "
                         "numpy arrays go to edgeseg.postprocess.label_instances")
    if probs.ndim != 3 or probs.shape[0] != 3 or probs.shape[1] == 0 or probs.shape[2] == 0:
        raise InputError(f"probs must be a 3 x H x W tensor of class probabilities (background, "
                         f"body, border), got shape {tuple(probs.shape)}")
    if not probs.is_floating_point():
        raise InputError(f"probs must be a float tensor of probabilities in [0, 1], got {probs.dtype}")
    return probs.float()


def label_instances_torch(probs: Any, cfg: PostprocessConfig | None = None, **overrides: Any) -> Any:
    """Instance labels from a 3 x H x W probability tensor, on the tensor's device.

    The rules and parameters of :func:`edgeseg.postprocess.label_instances`; returns an
    H x W int32 tensor on the same device (0 background, 1..N nuclei).
    """
    torch = _torch()
    cfg = (cfg or PostprocessConfig()).with_overrides(**overrides)
    probs = _check_probs(probs)
    fg = probs[0] < torch.tensor(1.0 - cfg.fg_threshold, dtype=torch.float32)
    if cfg.fill_holes:
        fg = _fill_holes(fg)
    seeds = (probs[1] > torch.tensor(cfg.seed_threshold, dtype=torch.float32)) & fg
    labels, n = _number(components(seeds, 8), seeds, 1)
    todo = fg & ~seeds
    if n and cfg.max_grow:
        labels, todo = _grow(labels, todo, cfg.max_grow)
    if bool(todo.any()):
        rest, m = _number(components(todo, 8), todo, n + 1)
        labels = torch.where(todo, rest, labels)
        n += m
    return _renumber(labels, n, cfg.min_size, probs if cfg.min_confidence > 0 else None,
                     cfg.min_confidence, cfg.border_weight)


def _renumber(labels: Any, n: int, min_size: int, probs: Any = None,
              min_confidence: float = 0.0, border_weight: float = 1.0) -> Any:
    torch = _torch()
    if n == 0:
        return torch.zeros_like(labels)
    flat = labels.reshape(-1).long()
    areas = torch.bincount(flat, minlength=n + 1)
    keep = areas >= max(min_size, 1)
    if probs is not None:  # the confidence of postprocess.instance_confidence, in float64 too

        def mean(plane: int) -> Any:
            sums = torch.zeros(n + 1, dtype=torch.float64, device=labels.device)
            return sums.index_add_(0, flat, probs[plane].reshape(-1).double()) / areas.clamp(min=1)

        conf = (1.0 - mean(0) if border_weight == 1.0
                else mean(1) + border_weight * mean(2))
        keep &= conf >= min_confidence
    keep[0] = False
    if bool(keep[1:].all()):
        return labels
    lut = torch.cumsum(keep, 0).to(torch.int32) * keep
    return lut[labels.long()]


def instance_table_torch(labels: Any, probs: Any = None, image: Any = None) -> InstanceTable:
    """:func:`edgeseg.postprocess.instance_table` of a label tensor, measured on its device;
    only the per-instance columns come back to the host."""
    torch = _torch()
    if not isinstance(labels, torch.Tensor) or labels.ndim != 2:
        raise InputError(f"labels must be a 2-D torch tensor, got {type(labels).__name__}")
    h, w = labels.shape
    flat = labels.reshape(-1).long()
    on = flat > 0
    lab = flat[on]
    n = int(lab.max()) + 1 if lab.numel() else 1
    pix = torch.nonzero(on).reshape(-1)
    ys, xs = pix // w, pix % w
    f64 = dict(dtype=torch.float64, device=labels.device)

    def total(values: Any) -> Any:
        return torch.zeros(n, **f64).index_add_(0, lab, values.to(torch.float64))

    area = torch.bincount(lab, minlength=n)
    sums = {"y": total(ys), "x": total(xs)}
    if probs is not None:
        sums["score"] = total(1.0 - probs[0].reshape(-1)[on].double())
    if image is not None:
        sums["intensity"] = total(image.reshape(-1)[on])
    big = torch.iinfo(torch.int64).max
    corners = []
    for coord, reduce, init in ((ys, "amin", big), (xs, "amin", big), (ys, "amax", -1), (xs, "amax", -1)):
        base = torch.full((n,), init, dtype=torch.int64, device=labels.device)
        corners.append(base.scatter_reduce(0, lab, coord, reduce=reduce, include_self=True))
    present = area > 0
    present[0] = False
    ids = torch.nonzero(present).reshape(-1)
    host = {k: v[ids].cpu().numpy() for k, v in sums.items()}
    area_h = area[ids].cpu().numpy().astype(np.int64)
    bbox = torch.stack(corners, 1)[ids].cpu().numpy()
    bbox[:, 2:] += 1
    safe = np.maximum(area_h, 1)
    k = ids.numel()
    return InstanceTable(
        id=ids.cpu().numpy().astype(np.int64), area=area_h, bbox=bbox.reshape(k, 4),
        centroid=np.stack([host["y"] / safe, host["x"] / safe], axis=1).reshape(k, 2),
        score=host["score"] / safe if probs is not None else np.full(k, np.nan),
        intensity=host["intensity"] / safe if image is not None else np.full(k, np.nan))
