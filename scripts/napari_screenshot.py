#!/usr/bin/env python3
"""The README's screenshot of the napari widget on a real image (docs/napari-widget.png).

    xvfb-run -a .venv/bin/python scripts/napari_screenshot.py [--image PNG] [--out PNG]

napari's canvas needs OpenGL, which Qt's offscreen platform does not give: run it on a display,
or headless under Xvfb (apt-get install xvfb; Mesa renders in software). Opens a napari viewer with a real DSB2018 image (default: the plugin's sample, a
validation image the bundled model was not trained on), docks the edgeseg widget, segments the
image with the bundled model and saves the whole window (canvas, layer list, widget) as a PNG,
reduced to a palette of 256 colours to keep it small.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image", default=None, help="image file (default: the plugin's sample image)")
    p.add_argument("--out", default=str(REPO / "docs" / "napari-widget.png"))
    p.add_argument("--size", default="1280x660", help="window size WxH (default %(default)s)")
    args = p.parse_args(argv)

    import warnings

    warnings.filterwarnings("ignore", message=".*PyQt5 backend is deprecated")  # not in the picture
    import napari
    from PIL import Image as PILImage
    from qtpy.QtWidgets import QApplication

    from edgeseg.imageio import read_image_raw
    from edgeseg.napari._sample import nuclei
    from edgeseg.napari._widget import SegmentWidget

    viewer = napari.Viewer(title="napari + edgeseg")
    if args.image:
        viewer.add_image(read_image_raw(args.image), name=Path(args.image).stem[:16])
    else:
        data, meta, _ = nuclei()[0]
        viewer.add_image(data, **meta)
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Segment nuclei (edgeseg)", area="right")
    w, h = (int(v) for v in args.size.split("x"))
    viewer.window._qt_window.resize(w, h)
    widget.segment()
    end = time.monotonic() + 300
    while widget.worker is not None and time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.01)
    if widget.worker is not None:
        print("timed out waiting for the segmentation", file=sys.stderr)
        return 1
    labels = [layer for layer in viewer.layers if layer.name.endswith(" labels")][0]
    labels.contour = 2  # outlines keep the nuclei visible underneath
    viewer.layers.selection.active = labels
    viewer.reset_view()
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for _ in range(20):
        QApplication.processEvents()
    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()  # napari's own start-up notices (e.g. about the Qt binding): not the subject
    for _ in range(20):
        QApplication.processEvents()
    shot = viewer.screenshot(canvas_only=False, flash=False)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    img = PILImage.fromarray(shot[..., :3]).quantize(256, method=PILImage.Quantize.MEDIANCUT)
    img.save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size // 1024} KB, {shot.shape[1]}x{shot.shape[0]}): "
          f"{len(labels.features)} nuclei")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
