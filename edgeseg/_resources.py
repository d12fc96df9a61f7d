"""Paths of the files shipped inside the package (demo images, bundled models)."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
ASSETS_DIR = PACKAGE_DIR / "assets"
MODELS_DIR = PACKAGE_DIR / "models"


def demo_dir() -> Path:
    """Real CC0 DSB2018 validation images with labels (label-image layout)."""
    return ASSETS_DIR / "demo"
