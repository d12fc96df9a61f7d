"""``edgeseg live``: segment a camera, video file or synthetic stream, with overlay and frame rate."""

from __future__ import annotations

import argparse

from ._common import add_model_options

DESCRIPTION = "live segmentation of a camera (camera:0), a video file, or synthetic frames"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("live", help=DESCRIPTION, description=DESCRIPTION)
    p.add_argument("--source", default="camera:0", help="camera:N, synthetic, or a video file (default: %(default)s)")
    p.add_argument("--frames", type=int, default=None, help="stop after N frames")
    p.add_argument("--no-display", action="store_true", help="headless: no window")
    p.add_argument("--record", default=None, help="write the overlay video here (.avi, MJPG)")
    p.add_argument("--csv", default=None, help="write one row per frame: index, nuclei, ms, fps, dropped")
    p.add_argument("--every-frame", action="store_true",
                   help="segment every frame (default for files and synthetic); cameras default to the newest frame")
    add_model_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import cv2

    from .._atomic import atomic_write_text
    from ..live import LiveRunner, check_display, open_source
    from ..viz import overlay
    from ._common import make_segmenter
    from ._paths import check_writable

    if args.csv:
        check_writable(args.csv, option="--csv")
    if not args.no_display:
        check_display()
    seg = make_segmenter(args)
    rows, writer, last = ["index,nuclei,ms,fps,dropped"], None, None
    latest = args.source.startswith("camera:") and not args.every_frame
    try:
        with open_source(args.source, frames=args.frames) as source:
            for f in LiveRunner(seg, source, latest=latest).frames():
                last = f
                rows.append(f"{f.index},{f.result.count},{f.result.timings['total']:.1f},{f.fps:.2f},{f.dropped}")
                if args.record or not args.no_display:
                    view = cv2.cvtColor(overlay(f.image, f.result.labels, ids=False), cv2.COLOR_RGB2BGR)
                    cv2.putText(view, f"{f.result.count} nuclei  {f.fps:.1f} fps", (8, 20),
                                cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
                    if args.record:
                        if writer is None:
                            h, w = view.shape[:2]
                            writer = cv2.VideoWriter(args.record, cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (w, h))
                        writer.write(view)
                    if not args.no_display:
                        cv2.imshow("edgeseg live", view)
                        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                            break
    finally:
        if writer is not None:
            writer.release()
        if args.csv:
            atomic_write_text(args.csv, "\n".join(rows) + "\n")
    if last is None:
        print(f"edgeseg live: {args.source} gave no frames")
        return 1
    print(f"edgeseg live: {last.index + 1} frames from {args.source}, {last.fps:.1f} frames/s "
          f"({seg.backend}/{seg.device}/{seg.precision}), {last.dropped} dropped to stay current")
    return 0
