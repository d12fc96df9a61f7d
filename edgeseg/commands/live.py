"""``edgeseg live``: segment a camera, video file or synthetic stream, with overlay and frame rate.

``--record`` and ``--csv`` are checked before the model loads (folder exists, is writable, the
path is not a folder) and the video writer is checked when it opens: nothing is silently not
recorded. The CSV gets one row per frame as it goes (flushed), so a crash keeps the rows so far.
SIGINT and SIGTERM stop after the frame in progress: the video is finalised, the CSV closed, the
summary printed, exit status 128 + signal number; a second signal stops at once.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import add_model_options

DESCRIPTION = "live segmentation of a camera (camera:0), a video file, or synthetic frames"
CSV_HEADER = "index,nuclei,ms,fps,dropped"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("live", help=DESCRIPTION, description=DESCRIPTION)
    p.add_argument("--source", default="camera:0", help="camera:N, synthetic, or a video file (default: %(default)s)")
    p.add_argument("--frames", type=int, default=None, help="stop after N frames")
    p.add_argument("--no-display", action="store_true", help="headless: no window")
    p.add_argument("--record", default=None, help="write the overlay video here (.avi, MJPG)")
    p.add_argument("--csv", default=None, help="write one row per frame as it goes: " + CSV_HEADER)
    p.add_argument("--every-frame", action="store_true",
                   help="segment every frame (default for files and synthetic); cameras default to the newest frame")
    add_model_options(p)
    p.set_defaults(run=run)


def check_output_file(option: str, path: str, example: str) -> None:
    """Raise DataError unless a file can be created at ``path`` (before any work is done)."""
    import tempfile

    from ..errors import DataError

    p = Path(path)
    folder = p.parent
    if p.is_dir():
        raise DataError(f"{option} {path} is a folder; expected a file path such as {p / example}")
    if not folder.is_dir():
        raise DataError(f"{option} {path}: the folder {folder} does not exist; create it first or "
                        "choose another path")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise DataError(f"{option} {path}: cannot write in {folder} ({exc.strerror or exc}); choose a "
                        "writable folder") from None


def open_video_writer(path: str, width: int, height: int) -> object:
    """An MJPG ``cv2.VideoWriter`` (check ``isOpened()``); OpenCV's own log is silenced meanwhile,
    since an unusable path is reported by the caller in one line."""
    import cv2

    api = getattr(getattr(cv2, "utils", None), "logging", None)
    previous = api.getLogLevel() if api is not None else None
    if api is not None:
        api.setLogLevel(api.LOG_LEVEL_SILENT)
    try:
        return cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (width, height))
    finally:
        if api is not None:
            api.setLogLevel(previous)


def run(args: argparse.Namespace) -> int:
    import signal
    import threading

    import cv2

    from ..errors import DataError, InputError
    from ..live import LiveRunner, check_display, open_source
    from ..viz import overlay
    from ._common import make_segmenter
    from ._paths import check_writable

    if args.frames is not None and args.frames < 1:
        raise InputError(f"--frames must be at least 1, got {args.frames}; leave it out to run until "
                         "the source ends")
    if args.record:
        check_output_file("--record", args.record, "live.avi")
    if args.csv:
        check_writable(args.csv, option="--csv")  # not a device, folder or unwritable place
        check_output_file("--csv", args.csv, "live.csv")
    if not args.no_display:
        check_display()
    seg = make_segmenter(args)
    latest = args.source.startswith("camera:") and not args.every_frame
    writer, csv_file, last, stopped_by = None, None, None, []
    old_handlers: dict = {}
    try:
        with open_source(args.source, frames=args.frames) as source:
            runner = LiveRunner(seg, source, latest=latest)

            def on_signal(signum: int, _frame: object) -> None:
                if stopped_by:  # a second signal: stop now
                    raise KeyboardInterrupt
                stopped_by.append(signum)
                runner.stop()

            if threading.current_thread() is threading.main_thread():
                old_handlers = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
            if args.csv:
                csv_file = open(args.csv, "w", encoding="utf-8", newline="")
                csv_file.write(CSV_HEADER + "\n")
                csv_file.flush()
            for f in runner.frames():
                last = f
                view = None
                if args.record or not args.no_display:
                    view = cv2.cvtColor(overlay(f.image, f.result.labels, ids=False), cv2.COLOR_RGB2BGR)
                    cv2.putText(view, f"{f.result.count} nuclei  {f.fps:.1f} fps", (8, 20),
                                cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
                if args.record:
                    if writer is None:
                        h, w = view.shape[:2]
                        writer = open_video_writer(args.record, w, h)
                        if not writer.isOpened():
                            writer = None
                            raise DataError(f"--record {args.record}: OpenCV could not open an MJPG video "
                                            f"writer for {w}x{h} frames there; expected a path ending in "
                                            ".avi in a writable folder")
                    writer.write(view)
                if csv_file is not None:
                    csv_file.write(f"{f.index},{f.result.count},{f.result.timings['total']:.1f},"
                                   f"{f.fps:.2f},{f.dropped}\n")
                    csv_file.flush()
                if not args.no_display:
                    cv2.imshow("edgeseg live", view)
                    if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                        break
    finally:
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
        if writer is not None:
            writer.release()
        if csv_file is not None:
            csv_file.close()
    stop_note = ""
    if stopped_by:
        stop_note = f"; stopped by {signal.Signals(stopped_by[0]).name}"
    if last is None:
        print(f"edgeseg live: {args.source} gave no frames{stop_note}")
        return 128 + stopped_by[0] if stopped_by else 1
    lat = runner.latency
    latency = (f", latency p50 {lat['p50_ms']:.0f} ms / p99 {lat['p99_ms']:.0f} ms"
               if lat.get("frames") else "")
    print(f"edgeseg live: {last.index + 1} frames from {args.source}, {last.fps:.1f} frames/s "
          f"({seg.backend}/{seg.device}/{seg.precision}){latency}, {last.dropped} dropped to stay current"
          f"{stop_note}")
    return 128 + stopped_by[0] if stopped_by else 0
