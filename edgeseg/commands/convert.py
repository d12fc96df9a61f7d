"""``edgeseg convert``: a trained model to ONNX (the target follows from the -o suffix)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

DESCRIPTION = "convert a trained model: MODEL -> .onnx (fp32, verified against torch)"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help=DESCRIPTION, description=DESCRIPTION)
    p.add_argument("model", help="'default', a .pt checkpoint")
    p.add_argument("-o", "--output", required=True, help="output file; its suffix sets the target (.onnx)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17, default: %(default)s)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError

    out = Path(args.output)
    if out.suffix != ".onnx":
        raise InputError(f"cannot tell the conversion target from {out}: expected an output ending "
                         "in .onnx")
    from edgeseg.converters.onnx_export import export_onnx

    t0 = time.perf_counter()
    export_onnx(args.model, out, opset=args.opset)
    print(f"edgeseg convert: {args.model} -> {out} (fp32, {out.stat().st_size / 1e6:.1f} MB, "
          f"{time.perf_counter() - t0:.1f} s, ONNX Runtime vs torch within 1e-4)")
    return 0
