"""Embedding edgeseg in a host application: a worker thread turns frames into nucleus tables.

A microscope-control program hands frames to ``NucleiCounter.submit`` from its acquisition
thread and receives ``(frame_id, rows)`` in a callback; errors in a frame are reported, not
raised into the acquisition thread. One Segmenter serves all frames (it is thread-safe).

    python examples/embed_segmenter.py [--model default] [--images DIR]
"""

from __future__ import annotations

import argparse
import queue
import threading
from typing import Callable

import numpy as np

from edgeseg import EdgesegError, Segmenter


class NucleiCounter:
    """Segments submitted frames in a background thread, newest-first under load."""

    def __init__(self, model: str, on_result: Callable[[int, list[dict]], None],
                 on_error: Callable[[int, Exception], None], max_pending: int = 4) -> None:
        self.seg = Segmenter(model)
        self.on_result, self.on_error = on_result, on_error
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self._worker = threading.Thread(target=self._run, name="nuclei-counter", daemon=True)
        self._worker.start()

    def submit(self, frame_id: int, frame: np.ndarray) -> bool:
        """Queue a frame; returns False (frame skipped) when the worker is behind."""
        try:
            self._queue.put_nowait((frame_id, frame))
            return True
        except queue.Full:
            return False

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            frame_id, frame = item
            try:
                self.on_result(frame_id, self.seg.segment(frame).instances.rows())
            except EdgesegError as exc:  # a bad frame: report it, keep serving
                self.on_error(frame_id, exc)

    def close(self) -> None:
        self._queue.put(None)
        self._worker.join()
        self.seg.close()


def main(argv: list[str] | None = None) -> int:
    from edgeseg._resources import demo_dir
    from edgeseg.data import load_dataset

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--images", default=str(demo_dir()), help="a folder of images to feed as frames")
    args = ap.parse_args(argv)

    done = threading.Event()
    results: dict[int, int] = {}

    def on_result(frame_id: int, rows: list[dict]) -> None:
        results[frame_id] = len(rows)
        print(f"frame {frame_id}: {len(rows)} nuclei, mean area "
              f"{np.mean([r['area'] for r in rows]) if rows else 0:.0f} px")

    def on_error(frame_id: int, exc: Exception) -> None:
        results[frame_id] = -1
        print(f"frame {frame_id}: rejected ({exc})")

    counter = NucleiCounter(args.model, on_result, on_error, max_pending=16)
    frames = [s.image() for s in load_dataset(args.images)]
    frames.append(np.zeros((4, 4, 2), np.uint8))  # a malformed frame: reported, not fatal
    for i, frame in enumerate(frames):
        counter.submit(i, frame)
    counter.close()
    done.set()
    print(f"{sum(1 for v in results.values() if v >= 0)} frames segmented, "
          f"{sum(1 for v in results.values() if v < 0)} rejected")
    return 0 if len(results) == len(frames) else 1


if __name__ == "__main__":
    raise SystemExit(main())
