"""``edgeseg eval``: Kaggle DSB2018 score, AP@0.5 and F1@0.5 of a model on a labelled dataset."""

from __future__ import annotations

import argparse

from ._common import add_model_options, progress

DESCRIPTION = "score a model on a labelled dataset (either layout): DSB2018 score, AP@0.5, F1@0.5"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help=DESCRIPTION, description=DESCRIPTION)
    p.add_argument("--data", required=True, help="dataset folder (images/ + labels/, or Kaggle per-mask layout)")
    p.add_argument("--subset", choices=("all", "val"), default=None,
                   help="'all' (default): every image of --data, or with --ids split.json every id of the "
                        "split (train + val); 'val': the validation ids of --ids split.json (its default), "
                        "or else of the model card")
    p.add_argument("--ids", default=None, help="a split.json (train/val id lists) or a text file of ids")
    p.add_argument("--json", default=None, help="write the overall figures and per-image rows here")
    p.add_argument("--scales", default="1", metavar="Z[,Z...]",
                   help="scale-shift check: also score copies of the images and labels resized "
                        "by these zooms, e.g. 0.5,1,2 (another objective; labels shrunk by area "
                        "coverage, so they stay aligned with the image; default: %(default)s)")
    add_model_options(p)
    p.set_defaults(run=run)


def select_ids(ids_file: str | None, subset: str | None, model_card: dict) -> tuple[list[str] | None, str, str]:
    """(ids to score or None for every image, the subset scored, a description for the report).

    ``--ids split.json``: ``val`` (default) its val ids, ``all`` its train + val ids. ``--ids
    ids.txt``: the ids it lists (``--subset`` does not apply). No ``--ids``: ``all`` (default)
    every image, ``val`` the model card's validation ids.
    """
    from pathlib import Path

    from ..data import load_split
    from ..errors import DataError, InputError
    from ..evaluate import subset_ids

    if ids_file is None:
        subset = subset or "all"
        ids = subset_ids(model_card, subset)
        what = "every labelled image of --data" if ids is None else f"the model card's {len(ids)} validation ids"
        return ids, subset, what
    p = Path(ids_file)
    if p.suffix == ".json":
        split = load_split(p)
        subset = subset or "val"
        if subset == "all":
            ids = list(dict.fromkeys([*split["train"], *split["val"]]))
            return ids, subset, f"all {len(ids)} ids of {p} (train {len(split['train'])} + val {len(split['val'])})"
        return list(split["val"]), subset, f"the {len(split['val'])} val ids of {p}"
    if subset is not None:
        raise InputError(f"--subset {subset} does not apply to {p}, a plain list of ids (scored as it is); "
                         "drop --subset, or pass a split.json to choose its train + val ('all') or val ids")
    if not p.is_file():
        raise DataError(f"id list not found: {p}; expected a split.json or a text file with one id per line")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise DataError(f"cannot read the id list {p} ({reason}); expected a text file with one id per "
                        "line, or a split.json") from None
    ids = [line.strip() for line in text.splitlines() if line.strip()]
    if not ids:
        raise DataError(f"{p} lists no ids; expected one image id per line (or a split.json)")
    return ids, "listed", f"the {len(ids)} ids listed in {p}"


def _zooms(text: str) -> list[float]:
    from ..errors import InputError

    try:
        zooms = [float(z) for z in text.split(",") if z.strip()]
    except ValueError:
        zooms = []
    if not zooms or any(not 0.05 <= z <= 8 for z in zooms):
        raise InputError(f"--scales takes zoom factors in [0.05, 8] separated by commas, got "
                         f"{text!r}; e.g. --scales 0.5,1,2")
    return sorted(set(zooms), key=lambda z: (z != 1.0, z))


def run(args: argparse.Namespace) -> int:
    from .._atomic import atomic_write_json
    from ..data import load_dataset
    from ..errors import DataError
    from ..evaluate import evaluate
    from ._common import make_segmenter
    from ._paths import check_writable

    if args.json:
        check_writable(args.json, option="--json", inputs=(args.model, args.ids))
    samples = load_dataset(args.data)
    seg = make_segmenter(args)
    ids, subset, scored = select_ids(args.ids, args.subset, seg.info.model_card)
    if ids is not None:
        by_id = {s.id: s for s in samples}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise DataError(f"{len(missing)} of the {len(ids)} requested images are not in {args.data} "
                            f"(first: {missing[0]}); point --data at the dataset the model was trained on")
        samples = [by_id[i] for i in ids]
    zooms = _zooms(args.scales)
    reports = {z: evaluate(seg, samples, zoom=z,
                           progress=lambda xs, z=z: progress(xs, args.progress, unit="image",
                                                             desc=f"eval x{z:g}"))
               for z in zooms}
    report = dict(reports[1.0] if 1.0 in reports else reports[zooms[0]])
    if len(zooms) > 1 or zooms[0] != 1.0:
        base = reports.get(1.0, {}).get("dsb_score")
        report["scale_shift"] = {
            f"{z:g}": {"dsb_score": r["dsb_score"], "per_kind": r["per_kind"],
                       **{k: r[k] for k in ("dsb_score_nearest", "nearest_ceiling") if k in r},
                       "ratio_to_1x": (r["dsb_score"] / base) if base else None,
                       "images": r["images"]} for z, r in reports.items()}
    report.update({"diameter": seg.diameter, "tta": seg.tta, "model": args.model, "backend": seg.backend, "device": seg.device,
                   "precision": seg.precision, "data": str(args.data), "subset": subset,
                   "scored": scored, "ids_file": args.ids, "postprocess": seg.postprocess.to_dict()})
    for kind, k in report["per_kind"].items():
        print(f"  {kind:13s} {k['n_images']:4d} images  DSB {k['dsb_score']:.4f}")
    print(f"edgeseg eval: {report['n_images']} images ({scored}), DSB2018 score {report['dsb_score']:.4f}, "
          f"AP@0.5 {report['ap50']:.4f}, F1@0.5 {report['f1_50']:.4f} "
          f"({seg.backend}/{seg.device}/{seg.precision}, {report['wall_s']:.1f} s)")
    for z, r in report.get("scale_shift", {}).items():
        ratio = r["ratio_to_1x"]
        print(f"  scale x{z:4s} DSB {r['dsb_score']:.4f}"
              + (f"  ({ratio:.3f} x unshifted)" if ratio is not None else "")
              + "  " + ", ".join(f"{k} {v['dsb_score']:.3f}" for k, v in r["per_kind"].items())
              + (f"  [truth shrunk by nearest neighbour: {r['dsb_score_nearest']:.4f}, "
                 f"ceiling {r['nearest_ceiling']:.3f}]" if "nearest_ceiling" in r else ""))
    if args.json:
        atomic_write_json(args.json, report)
    return 0
