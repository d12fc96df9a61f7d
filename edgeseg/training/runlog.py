"""The run log: ``log.csv`` (step, loss parts, lr, images/s, wall time, val metrics) and
``curves.png``."""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Any

from .._atomic import atomic_open, atomic_write_text
from ..data import IMAGE_KINDS

log = logging.getLogger(__name__)

__all__ = ["RunLog"]


class RunLog:
    """Rows of ``log.csv`` (one per logged step; train and val values of a step merged)."""

    COLUMNS = ("step", "loss", "ce", "dice", "lr", "images_per_s", "wall_s", "val_dsb",
               "val_ap50", "val_f1_50") + tuple(f"val_dsb_{k}" for k in IMAGE_KINDS)

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: dict[int, dict[str, Any]] = {}
        self._warned_plot = False

    def load(self, upto: int) -> None:
        """Read an existing log, keeping rows of steps <= ``upto`` (later ones are redone)."""
        if not self.path.is_file():
            return
        with open(self.path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                try:
                    step = int(row["step"])
                except (KeyError, ValueError):
                    continue
                if step <= upto:
                    self.rows[step] = {k: v for k, v in row.items() if v not in ("", None)}

    def add(self, step: int, **values: Any) -> None:
        self.rows.setdefault(step, {"step": step}).update(values)

    def write(self) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.COLUMNS, extrasaction="ignore")
        w.writeheader()
        for step in sorted(self.rows):
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v)
                        for k, v in self.rows[step].items()})
        atomic_write_text(self.path, buf.getvalue())

    def series(self, column: str) -> tuple[list[int], list[float]]:
        xs, ys = [], []
        for step in sorted(self.rows):
            v = self.rows[step].get(column)
            if v not in (None, ""):
                xs.append(step)
                ys.append(float(v))
        return xs, ys

    def plot(self, path: Path) -> None:
        """Loss (log scale) and val DSB score vs step, as a PNG (matplotlib Agg); skipped with
        a warning where matplotlib is not installed (log.csv holds the same numbers)."""
        try:
            from matplotlib.figure import Figure  # no pyplot: no global backend state
        except ImportError:
            if not self._warned_plot:
                log.warning("matplotlib is not installed: %s is not drawn (log.csv holds the "
                            "curves; pip install matplotlib)", path.name)
                self._warned_plot = True
            return
        fig = Figure(figsize=(10, 4), dpi=100)
        ax1, ax2 = fig.subplots(1, 2)
        for col in ("loss", "ce", "dice"):
            xs, ys = self.series(col)
            if xs:
                ax1.plot(xs, ys, label=col, lw=1)
        ax1.set_xlabel("step")
        ax1.set_yscale("log")
        ax1.set_title("training loss")
        if ax1.lines:
            ax1.legend()
        for col in ("val_dsb", "val_ap50", "val_f1_50") + tuple(f"val_dsb_{k}"
                                                                  for k in IMAGE_KINDS):
            xs, ys = self.series(col)
            if xs:
                ax2.plot(xs, ys, label=col[4:], marker="." if len(xs) < 50 else None,
                         lw=2 if col == "val_dsb" else 0.8)
        ax2.set_xlabel("step")
        ax2.set_title("validation")
        ax2.grid(alpha=0.3)
        if ax2.lines:
            ax2.legend(fontsize=7)
        fig.tight_layout()
        with atomic_open(path, "wb") as f:
            fig.savefig(f, format="png")
