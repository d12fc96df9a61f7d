"""``edgeseg predict --dask SCHEDULER``: images on a Dask cluster (``local:N`` or an address).

* Ordinary images become one job each, run on the workers; each worker loads the model once and
  writes the outputs ``predict`` always writes (``OUT/a.png.labels.tif``, ``.instances.csv``,
  ``.overlay.png``), each atomically. Workers write to ``OUT`` themselves: on a cluster it must be
  a folder every worker sees (a shared filesystem), as the images and the model must be.
* Arrays too large for one worker's memory -- ``.zarr`` folders (an OME-Zarr image or a plain 2-D
  zarr array) and TIFFs over ``--large-pixels`` -- are read lazily and segmented chunk by chunk
  (:func:`edgeseg.dask.segment_array`) into OME-Zarr labels ``OUT/<name>.labels.ome.zarr`` (NGFF
  0.4: multiscales metadata, level 0 at full resolution, int32) and ``OUT/<name>.instances.csv``.
  The OME-Zarr is written under a temporary name and renamed when complete.

A failed job is retried once, then reported (the others go on; exit status 1 at the end). A re-run
skips every image whose outputs all exist, so an interrupted run loses only the images in flight.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ZARR_SUFFIX = "labels.ome.zarr"
DEFAULT_LARGE_PIXELS = 1 << 26  # 8192 x 8192: larger TIFFs are segmented chunk by chunk
CSV_COLUMNS = ["id", "area", "centroid_y", "centroid_x", "y0", "x0", "y1", "x1", "intensity", "score"]


def _options(args: argparse.Namespace, diameter: Any) -> Any:
    from ..dask._worker import ChunkOptions

    thresholds = tuple((k, v) for k, v in (("fg_threshold", args.fg_threshold), ("min_size", args.min_size),
                                            ("seed_threshold", args.seed_threshold),
                                            ("min_confidence", args.min_confidence),
                                            ("border_weight", args.border_weight)) if v is not None)
    return ChunkOptions(model=str(args.model), backend=args.backend, device=args.device, tile=args.tile,
                        diameter=diameter, tta=bool(args.tta), thresholds=thresholds)


def _diameter(args: argparse.Namespace) -> Any:
    from ..sizing import check_diameter

    return check_diameter(None if args.diameter in (None, "none") else args.diameter)


@contextlib.contextmanager
def connect(spec: str) -> Iterator[Any]:
    """A distributed Client for ``local:N`` (a LocalCluster of N one-thread worker processes,
    closed at the end) or a scheduler address (``tcp://host:8786``; the cluster stays up)."""
    from ..errors import BackendUnavailableError, InputError

    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise BackendUnavailableError("--dask needs dask.distributed, which is not installed; install it "
                                      "with `pip install 'edgeseg[dask]'`") from None
    if spec.startswith("local:"):
        try:
            n = int(spec[len("local:"):])
        except ValueError:
            n = 0
        if n < 1:
            raise InputError(f"--dask {spec}: expected local:N with N >= 1 workers (e.g. local:2), or a "
                             "scheduler address such as tcp://host:8786")
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
                Client(cluster) as client:
            yield client
        return
    if "://" not in spec and ":" not in spec:
        raise InputError(f"--dask {spec!r}: expected local:N (e.g. local:2) or a scheduler address such as "
                         "tcp://host:8786")
    try:
        client = Client(spec, timeout="20s")
    except (OSError, TimeoutError) as exc:
        raise InputError(f"--dask {spec}: no Dask scheduler answered there ({exc}); start one "
                         "(dask scheduler) or use local:N") from None
    with client:
        yield client


# ----------------------------------------------------------------------------- what to do


def _is_array(path: Path, large: int) -> bool:
    """Whether ``path`` goes through segment_array (a .zarr folder, or a TIFF over ``large`` px)."""
    if path.is_dir():
        return True
    if path.suffix.lower() not in (".tif", ".tiff"):
        return False
    try:
        import tifffile
    except ImportError:  # then large TIFFs are read whole, as without --dask
        return False
    try:
        with tifffile.TiffFile(str(path)) as tif:  # the first page's shape, no pixels read
            shape = tif.pages[0].shape
    except Exception:  # noqa: BLE001 - not a readable TIFF: the per-image job reports it
        return False
    return len(shape) >= 2 and shape[0] * shape[1] > large


def _inputs(items: list[str]) -> list[Path]:
    from ._common import expand_images

    paths: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir() and p.suffix.lower() == ".zarr":
            paths.append(p)
        else:
            paths.extend(expand_images([item]))
    return paths


def _array_outputs(out: Path, path: Path) -> dict[str, Path]:
    return {ZARR_SUFFIX: out / f"{path.name}.{ZARR_SUFFIX}", "instances.csv": out / f"{path.name}.instances.csv"}


def _done(outs: dict[str, Path]) -> bool:
    return all(q.is_dir() if q.name.endswith(".zarr") else q.is_file() for q in outs.values())


# ----------------------------------------------------------------------------- jobs


def file_job(path: str, outs: dict[str, str], options: Any, max_pixels: Any) -> int:
    """One image on a worker: segment it with this process's Segmenter, write its outputs."""
    from ..dask._worker import segmenter_for
    from ..segmenter import segment_files
    from .predict import write_outputs

    seg = segmenter_for(options)
    _, raw, result = next(iter(segment_files(seg, [path], max_pixels=max_pixels)))
    write_outputs({k: Path(v) for k, v in outs.items()}, raw, result)
    return result.count


def open_array(path: Path) -> Any:
    """A lazy dask array of a .zarr folder (OME-Zarr: its level 0) or a TIFF."""
    import dask.array as da
    import zarr

    from ..errors import DataError

    try:
        if path.is_dir():
            node = zarr.open(str(path), mode="r")
            if isinstance(node, zarr.Group):
                attrs = dict(node.attrs)
                ms = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
                if not ms:
                    raise DataError(f"{path} is a zarr group without OME-Zarr multiscales metadata; pass "
                                    "the array inside it (e.g. {path}/0)")
                node = node[ms[0]["datasets"][0]["path"]]
            arr = da.from_zarr(node)
        else:
            import tifffile
            arr = da.from_zarr(zarr.open(tifffile.imread(str(path), aszarr=True), mode="r"))
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - zarr / tifffile raise many kinds on a bad store
        raise DataError(f"cannot read {path} as an array ({type(exc).__name__}: {exc}); expected a 2-D "
                        "OME-Zarr image, zarr array or TIFF") from None
    if arr.ndim > 2:  # OME-Zarr (t, c, z, y, x): the first plane of the leading axes
        lead = arr.shape[:-2]
        if any(n > 1 for n in lead):
            raise DataError(f"{path} holds an array of shape {arr.shape}; predict --dask segments one 2-D "
                            "plane: pass a single-plane image")
        arr = arr.reshape(arr.shape[-2:])
    return arr


def _put(block: Any, target: Any, y: int, x: int) -> int:
    """Write one chunk of labels into the zarr array ``target`` at (y, x) (on a worker)."""
    target[y:y + block.shape[0], x:x + block.shape[1]] = block
    return int(block.size)


def write_ome_zarr(client: Any, arr: Any, outs: dict[str, Path], options: Any, chunk: int,
                   progress: bool) -> int:
    """Segment ``arr`` chunk by chunk into an OME-Zarr label image and an instance CSV."""
    import dask
    import zarr
    from distributed import as_completed

    from .._atomic import atomic_write_text
    from ..dask import segment_array

    target = outs[ZARR_SUFFIX]
    labels, table = segment_array(arr, options.model, chunk=chunk, diameter=options.diameter,
                                  with_table=True, backend=options.backend, device=options.device,
                                  tile=options.tile, tta=options.tta, **dict(options.thresholds))
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=2)
        level0 = group.create_array("0", shape=labels.shape, chunks=(chunk, chunk), dtype="int32",
                                    fill_value=0, chunk_key_encoding={"name": "v2", "separator": "/"})
        put = dask.delayed(_put, pure=True)
        y0s = [sum(labels.chunks[0][:i]) for i in range(len(labels.chunks[0]))]
        x0s = [sum(labels.chunks[1][:j]) for j in range(len(labels.chunks[1]))]
        blocks = labels.to_delayed()
        writes = [put(blocks[i, j], level0, y, x) for i, y in enumerate(y0s) for j, x in enumerate(x0s)]
        futures = client.compute(writes + [table])
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=len(writes), unit="chunk", desc=target.name)
        for fut in as_completed(futures[:-1]):
            fut.result()
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        rows = futures[-1].result()
        group.attrs.update(_ngff_attrs(target.name))
        atomic_write_text(outs["instances.csv"], instance_csv(rows))
        if target.exists():  # --overwrite
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return len(rows)


def instance_csv(table: Any) -> str:
    """The instance table as ``predict`` writes it (the same columns as its per-image CSVs)."""
    import csv
    import io

    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in table.rows():
        writer.writerow({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()})
    return text.getvalue()


def _ngff_attrs(name: str) -> dict[str, Any]:
    return {"multiscales": [{
        "version": "0.4", "name": name,
        "axes": [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0, 1.0]}]}],
    }], "image-label": {"version": "0.4"}}


def _clean_stale(out: Path) -> None:
    """Remove temporary OME-Zarr folders an interrupted run left (their names start with a dot)."""
    for p in out.glob(f".*.{ZARR_SUFFIX}.*.tmp"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)


# ----------------------------------------------------------------------------- the command


def run_dask(args: argparse.Namespace) -> int:
    from ..errors import DataError, EdgesegError
    from ._paths import check_writable
    from .predict import plan_outputs

    out = check_writable(args.out, folder=True, option="-o/--out")
    paths = _inputs(args.images)
    large = DEFAULT_LARGE_PIXELS if args.large_pixels is None else args.large_pixels
    arrays = [p for p in paths if _is_array(p, large)]
    files = [p for p in paths if p not in set(arrays)]
    plan = [(p, {k: str(v) for k, v in o.items()})
            for p, o in plan_outputs(files, out, overlay=not args.no_overlay)] if files else []
    array_plan = [(p, _array_outputs(out, p)) for p in arrays]
    todo = [(p, o) for p, o in plan if args.overwrite or not all(Path(q).is_file() for q in o.values())]
    todo_arrays = [(p, o) for p, o in array_plan if args.overwrite or not _done(o)]
    total = len(plan) + len(array_plan)
    skipped = total - len(todo) - len(todo_arrays)
    if not todo and not todo_arrays:
        print(f"edgeseg predict: nothing to do, all {total} images have their outputs in {out}/ "
              "(--overwrite to segment them again)")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    _clean_stale(out)
    diameter = _diameter(args)
    failed: list[tuple[Path, str]] = []
    done, nuclei, t0 = 0, 0, time.perf_counter()
    with connect(args.dask) as client:
        say = print
        if todo:
            from distributed import as_completed

            options = _options(args, diameter)
            futures = {client.submit(file_job, str(p), o, options, args.max_pixels, retries=1, pure=False): p
                       for p, o in todo}
            bar = None
            if args.progress:
                from tqdm import tqdm
                bar = tqdm(total=len(futures), unit="image", desc="predict --dask")
                say = bar.write
            for fut in as_completed(futures):
                p = futures[fut]
                try:
                    nuclei += fut.result()
                    done += 1
                except Exception as exc:  # noqa: BLE001 - retried once already (retries=1): report it
                    if args.fail_fast:
                        client.cancel(list(futures))
                        raise DataError(f"{p} could not be segmented (tried twice): {exc}") from None
                    failed.append((p, str(exc)))
                    say(f"edgeseg predict: {p} failed twice (going on with the others): "
                        f"{type(exc).__name__ if not isinstance(exc, (EdgesegError, OSError)) else ''}"
                        f"{exc}", file=sys.stderr)
                if bar is not None:
                    bar.update(1)
            if bar is not None:
                bar.close()
        for p, outs in todo_arrays:
            for attempt in (1, 2):
                try:
                    nuclei += write_ome_zarr(client, open_array(p), outs, _options(args, diameter),
                                             args.chunk, args.progress)
                    done += 1
                    break
                except (EdgesegError, OSError) as exc:
                    if attempt == 2 or isinstance(exc, DataError):
                        failed.append((p, str(exc)))
                        print(f"edgeseg predict: {p} failed (going on with the others): {exc}", file=sys.stderr)
                    else:
                        log.warning("%s failed, retrying once: %s", p, exc)
    wall = time.perf_counter() - t0
    from .predict import report

    return report(f"{done} of {total} images segmented on Dask ({args.dask})", total, skipped,
                  [p for p, _ in failed], f"{nuclei} nuclei, {wall:.1f} s; wrote {out}/")
