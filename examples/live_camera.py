"""Live nuclei segmentation from a microscope camera, with an overlay window.

    python examples/live_camera.py                           # camera 0, bundled model
    python examples/live_camera.py --model model.int8.engine # on a Jetson, TensorRT engine
    python examples/live_camera.py --source synthetic --frames 50 --no-display --record out.avi
    python examples/live_camera.py --source recording.mp4    # replay a recorded experiment

The segmentation always works on the newest camera frame (older ones are dropped), so the
overlay stays current even when the device is slower than the camera. Press q to quit.
"""

from __future__ import annotations

import argparse

import cv2

from edgeseg import Segmenter
from edgeseg.live import LiveRunner, check_display, open_source
from edgeseg.viz import overlay


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default="camera:0", help="camera:N, synthetic, or a video file")
    ap.add_argument("--model", default="default", help="'default', .pt, .onnx or .engine")
    ap.add_argument("--frames", type=int, default=None, help="stop after N frames")
    ap.add_argument("--no-display", action="store_true", help="run headless")
    ap.add_argument("--record", default=None, help="save the overlay video (.avi)")
    args = ap.parse_args(argv)

    if not args.no_display:
        check_display()
    seg = Segmenter(args.model)
    writer = None
    with open_source(args.source, frames=args.frames) as source:
        camera = args.source.startswith("camera:")
        for frame in LiveRunner(seg, source, latest=camera).frames():
            view = cv2.cvtColor(overlay(frame.image, frame.result.labels, ids=False), cv2.COLOR_RGB2BGR)
            cv2.putText(view, f"{frame.result.count} nuclei  {frame.fps:.1f} fps", (8, 20),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
            if args.record:
                if writer is None:
                    writer = cv2.VideoWriter(args.record, cv2.VideoWriter_fourcc(*"MJPG"), 10.0,
                                             (view.shape[1], view.shape[0]))
                if not writer.isOpened():  # a missing or read-only folder: say so, record nothing
                    raise SystemExit(f"cannot record to {args.record}: OpenCV could not open an "
                                     "MJPG video writer there (does the folder exist and is it writable?)")
                writer.write(view)
            if not args.no_display:
                cv2.imshow("edgeseg", view)
                if cv2.waitKey(1) & 0xFF == ord("q"):
                    break
            print(f"frame {frame.index}: {frame.result.count} nuclei, "
                  f"{frame.result.timings['total']:.0f} ms, {frame.dropped} dropped")
    if writer is not None:
        writer.release()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
