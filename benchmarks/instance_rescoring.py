#!/usr/bin/env python3
"""Would a learned instance score beat the confidence filter? Leave one acquisition group out.

    .venv/bin/python benchmarks/instance_rescoring.py --model default --json out/rescore.json \\
        [--diameter auto] [--train-images 0]

The shipped filter keeps an instance when its confidence, the mean of ``P(body) + border_weight *
P(border)``, is >= the model's ``min_confidence``. This script asks whether more per-instance
evidence would do better: it
segments the training images and the held-out groups of ``training/splits/dsb2018_groups.json``
(``min_confidence=0.5``, size control as ``--diameter``), measures for every instance

    conf (mean 1 - P(bg)), body (mean P(body)), border (mean P(border)), body_frac (share of
    pixels with P(body) > 0.5), fill (area / bounding-box area), log_area (log of the area at the
    network's scale), rel_area (log of area / the frame's median instance area), (conf - 0.8)^2

and fits a logistic regression (numpy Newton steps, L2 1e-2, image kinds weighted equally) for
"matches a true nucleus at IoU > 0.5". For each held-out group, the model is fitted on the training
images and the other groups, its probability threshold chosen on the other groups, and that
group scored with instances under the threshold removed; the same images with the model's own
rule (its ``min_confidence`` and ``border_weight``) are the baseline of the same run. Also reports the
ceiling: every instance that matches nothing at IoU 0.5 removed. Prints a table; writes JSON with
the coefficients, the CPU flags and versions.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import group_split_parser, machine, table, write_json  # noqa: E402

FEATURES = ("conf", "body", "border", "body_frac", "fill", "log_area", "rel_area", "conf_sq")
THRESHOLDS = (0.3, 0.4, 0.5, 0.6)


def instance_features(labels, probs, zoom):
    """(ids, n x len(FEATURES) array) of the instances of ``labels``: area, bounding box and
    mean foreground probability from :func:`edgeseg.postprocess.instance_table`, the other
    planes' means beside them."""
    import numpy as np

    from edgeseg.postprocess import instance_table

    table = instance_table(labels, probs)
    if len(table) == 0:
        return table.id, np.zeros((0, len(FEATURES)))
    lab = labels.reshape(-1)
    on = np.flatnonzero(lab)
    inv = np.searchsorted(table.id, lab[on])
    area = table.area.astype(np.float64)

    def mean(plane):
        return np.bincount(inv, weights=plane.reshape(-1)[on], minlength=len(table)) / area

    box = (table.bbox[:, 2] - table.bbox[:, 0]) * (table.bbox[:, 3] - table.bbox[:, 1])
    conf = table.score
    return table.id, np.stack([conf, mean(probs[1]), mean(probs[2]), mean(probs[1] > 0.5),
                               area / box, np.log(area / zoom ** 2),
                               np.log(area / np.median(area)), (conf - 0.8) ** 2], axis=1)


def fit_logistic(X, y, weights, l2=1e-2, steps=50):
    import numpy as np

    mu, sd = X.mean(0), X.std(0) + 1e-9
    Z = np.c_[(X - mu) / sd, np.ones(len(X))]
    b = np.zeros(Z.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-Z @ b))
        grad = Z.T @ ((p - y) * weights) + l2 * b
        hess = (Z * (p * (1 - p) * weights)[:, None]).T @ Z + l2 * np.eye(len(b))
        b -= np.linalg.solve(hess, grad)
    return mu, sd, b


def predict(model, X):
    import numpy as np

    mu, sd, b = model
    return 1.0 / (1.0 + np.exp(-(np.c_[(X - mu) / sd, np.ones(len(X))] @ b)))


def main() -> int:
    ap = group_split_parser(__doc__)
    ap.add_argument("--diameter", default="auto")
    ap.add_argument("--train-images", type=int, default=0, help="first N training images (0: all)")
    args = ap.parse_args()

    import numpy as np

    from edgeseg.data import image_kind, load_dataset, load_split
    from edgeseg.metrics import _dsb_from_iou, iou_matrix
    from edgeseg.segmenter import Segmenter

    split = load_split(args.split)
    groups = json.loads(Path(args.split).read_text()).get("groups", {})
    by_id = {s.id: s for s in load_dataset(args.data)}
    seg = Segmenter(args.model, backend="torch", device="cpu", min_confidence=0.5,
                    diameter=None if args.diameter == "none" else args.diameter)
    own = Segmenter(args.model, backend="torch", device="cpu").postprocess
    t0 = time.perf_counter()

    def measure(ids):
        out = []
        for i in ids:
            s = by_id[i]
            image, gt = s.image(), s.labels()
            r = seg.segment(image, probabilities=True)
            pids, X = instance_features(r.labels, r.probabilities, r.zoom)
            iou, _, iou_pids = iou_matrix(gt, r.labels)
            iou = iou[:, np.searchsorted(iou_pids, pids)] if pids.size else iou[:, :0]
            out.append({"id": i, "group": groups.get(i, "?"), "kind": image_kind(image), "X": X,
                        "iou": iou, "y": (iou.max(0) > 0.5).astype(float) if iou.shape[0]
                        else np.zeros(pids.size)})
        return out

    train_ids = split["train"][: args.train_images or None]
    train, val = measure(train_ids), measure(split["val"])
    wall = time.perf_counter() - t0

    def score(im, keep):
        return float(_dsb_from_iou(im["iou"][:, keep]))

    def stack(images):
        X = np.concatenate([im["X"] for im in images]); y = np.concatenate([im["y"] for im in images])
        kinds = np.concatenate([[im["kind"]] * len(im["y"]) for im in images])
        w = np.ones(len(y))
        for k in set(kinds):
            w[kinds == k] = len(y) / len(set(kinds)) / np.sum(kinds == k)
        return X, y, w

    rules = {"shipped": [], "learned": [], "ceiling": []}
    chosen, per_image = {}, {}
    for g in sorted({im["group"] for im in val}):
        held = [im for im in val if im["group"] == g]
        others = [im for im in val if im["group"] != g]
        model = fit_logistic(*stack(train + others))
        chosen[g] = max(THRESHOLDS, key=lambda t: np.mean(
            [score(im, predict(model, im["X"]) >= t) for im in others]))
        for im in held:
            conf = (im["X"][:, 0] if own.border_weight == 1.0
                    else im["X"][:, 1] + own.border_weight * im["X"][:, 2])
            rules["shipped"].append((im, score(im, conf >= own.min_confidence)))
            rules["learned"].append((im, score(im, predict(model, im["X"]) >= chosen[g])))
            rules["ceiling"].append((im, score(im, im["y"] > 0)))
            per_image[im["id"]] = {"group": g, "kind": im["kind"],
                                   **{name: pairs[-1][1] for name, pairs in rules.items()}}
    kinds = sorted({im["kind"] for im in val})
    rows = [{"rule": name, "dsb_all": float(np.mean([s for _, s in v])),
             **{f"dsb_{k}": float(np.mean([s for im, s in v if im["kind"] == k])) for k in kinds}}
            for name, v in rules.items()]
    full = fit_logistic(*stack(train + val))
    result = {"machine": machine(), "model": str(args.model), "diameter": args.diameter,
              "shipped_min_confidence": own.min_confidence,
              "shipped_border_weight": own.border_weight, "features": FEATURES,
              "n_train_images": len(train), "n_val_images": len(val), "rows": rows,
              "logo_threshold": chosen,
              "coefficients_all_images": {"mean": full[0].tolist(), "std": full[1].tolist(),
                                          "weights_and_bias": full[2].tolist()},
              "per_image": per_image,
              "wall_s": round(wall, 1)}
    print(table(rows, list(rows[0])))
    print(f"\nthreshold chosen per held-out group: {chosen}")
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
