"""edgeseg's napari plugin (npe2 manifest ``napari.yaml``; install ``pip install "edgeseg[napari]"``).

napari finds the plugin through the ``napari.manifest`` entry point and imports the modules named
in the manifest only when the widget is opened: ``import edgeseg`` never imports this package, and
this package imports napari and Qt only in :mod:`edgeseg.napari._widget` and
:mod:`edgeseg.napari._live`. The parts without Qt (:mod:`._options`, :mod:`._planes`) are plain
numpy and can be used and tested on their own.
"""
