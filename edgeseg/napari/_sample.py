"""``File > Open Sample > edgeseg nuclei``: a real DSB2018 fluorescence image shipped with edgeseg
(a validation image the bundled model was not trained on; CC0, see edgeseg/assets/demo)."""

from __future__ import annotations

from typing import Any

SAMPLE = "4d40de30a3db3bc4f241cb7f48e8497c11e8f20a99bf55788bdce17242029745.png"


def nuclei() -> list[tuple[Any, dict[str, Any], str]]:
    """The sample as napari layer data: ``[(image, {"name": ...}, "image")]``."""
    from .._resources import demo_dir
    from ..imageio import read_image_raw

    image = read_image_raw(demo_dir() / "images" / SAMPLE)
    return [(image, {"name": "nuclei (DSB2018)"}, "image")]
