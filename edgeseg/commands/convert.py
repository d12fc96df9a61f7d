"""``edgeseg convert``: a trained model -> ONNX (fp32/fp16/int8) or a TensorRT engine."""

from __future__ import annotations

import argparse

DESCRIPTION = "convert a model to ONNX (fp32, fp16, calibrated int8) or a TensorRT engine"
_EPILOG = """\
examples:
  edgeseg convert default -o model.onnx
  edgeseg convert default -o model.fp16.onnx --precision fp16
  edgeseg convert default -o model.int8.onnx --precision int8 --calib-data DSB/stage1_train
      # INT8 for ONNX Runtime on CPUs (the default for .onnx outputs)
  edgeseg convert default -o model.trt.int8.onnx --precision int8 --int8-target tensorrt --calib-data DSB/stage1_train
  edgeseg convert model.trt.int8.onnx -o model.int8.engine      # on the device (TensorRT)
  edgeseg convert default -o model.int8.engine --precision int8 --calib-data DSB/stage1_train

Only the output (and an engine's .engine.json sidecar) is written: never the input, never an
intermediate beside it. An ONNX model keeps its own precision unless --precision says otherwise
(only an fp32 model can become fp16 or int8).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help=DESCRIPTION, description=DESCRIPTION, epilog=_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="'default', a .pt checkpoint, or an .onnx model (fp32, fp16 or int8)")
    p.add_argument("-o", "--output", required=True, help="output; the suffix sets the target: .onnx or .engine")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8", "auto"), default=None,
                   help="default: the ONNX model's own precision (from its metadata), fp32 for a checkpoint; "
                        "'auto': build fp32 / fp16 / int8 (int8 with --calib-data), time and score each "
                        "here, keep the fastest within --max-drop DSB of fp32 (recorded in the metadata)")
    p.add_argument("--max-drop", type=float, default=0.01,
                   help="with --precision auto: the DSB score a precision may lose against fp32 "
                        "(default: %(default)s)")
    p.add_argument("--int8-target", choices=("onnxruntime", "tensorrt"), default=None,
                   help="INT8 flavour: 'onnxruntime' (CPUs: 7-bit weights, integer convolutions) or "
                        "'tensorrt' (INT8 at convolution inputs, FP16 elsewhere); default: 'tensorrt' for "
                        ".engine outputs, 'onnxruntime' for .onnx"),
    p.add_argument("--calib-data", default=None, help="training images for INT8 calibration (a dataset folder)")
    p.add_argument("--calib-method", choices=("minmax", "entropy", "percentile"), default="percentile")
    p.add_argument("--calib-images", type=int, default=64, help="calibration images (default: %(default)s)")
    p.add_argument("--calib-cache", default=None, help="JSON cache of tensor ranges (reused when it matches)")
    p.add_argument("--min-shape", default=None, help="engine profile minimum, NxCxHxW (e.g. 1x1x64x64)")
    p.add_argument("--opt-shape", default=None, help="engine profile optimum, NxCxHxW")
    p.add_argument("--max-shape", default=None, help="engine profile maximum, NxCxHxW")
    p.add_argument("--workspace", type=float, default=2.0, help="TensorRT workspace in GiB (default: %(default)s)")
    p.add_argument("--timing-cache", default=None, help="TensorRT timing cache file (read and updated)")
    p.add_argument("--no-parity", action="store_true", help="skip the instance check against fp32")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ._paths import check_writable

    check_writable(args.output, option="-o/--output",
                   inputs=(args.model, args.calib_cache, args.timing_cache, args.calib_data))
    for option, cache in (("--calib-cache", args.calib_cache), ("--timing-cache", args.timing_cache)):
        if cache is not None:  # read if present, (re)written after the work
            check_writable(cache, option=option, inputs=(args.model,))
    shapes = (args.min_shape, args.opt_shape, args.max_shape)
    profile = None
    if any(shapes):
        if not all(shapes):
            raise InputError("give all three of --min-shape, --opt-shape and --max-shape, or none")
        from edgeseg.converters.tensorrt_build import parse_shape

        profile = tuple(parse_shape(s) for s in shapes)
    from edgeseg.converters.pipeline import convert

    from ._common import progress

    bar = progress(range(0), args.progress, desc="convert", bar_format="{desc}: {postfix}")
    stage = (lambda text: bar.set_postfix_str(text)) if hasattr(bar, "set_postfix_str") else None
    if args.precision == "auto":
        return _run_auto(args, profile, stage, bar)
    try:
        rep = convert(args.model, args.output, precision=args.precision, calib_data=args.calib_data,
                      calib_method=args.calib_method, calib_images=args.calib_images,
                      calib_cache=args.calib_cache, int8_target=args.int8_target, profile=profile,
                      workspace_gib=args.workspace,
                      timing_cache=args.timing_cache, parity=not args.no_parity, on_stage=stage)
    finally:
        if hasattr(bar, "close"):
            bar.close()
    parity = ("skipped" if rep.parity_dsb is None
              else f"DSB {rep.parity_dsb:.4f} vs {rep.parity_reference}'s instances")
    print(f"edgeseg convert: {args.model} -> {rep.output} ({rep.precision}, {rep.size_bytes / 1e6:.1f} MB, "
          f"{rep.seconds:.1f} s; parity: {parity})")
    return 0


def _run_auto(args: argparse.Namespace, profile: object, stage: object, bar: object) -> int:
    from edgeseg.converters.autoprecision import convert_auto

    try:
        rep, decision = convert_auto(args.model, args.output, max_drop=args.max_drop,
                                     calib_data=args.calib_data, on_stage=stage,
                                     calib_method=args.calib_method, calib_images=args.calib_images,
                                     calib_cache=args.calib_cache, int8_target=None, profile=profile,
                                     workspace_gib=args.workspace, timing_cache=args.timing_cache)
    finally:
        if hasattr(bar, "close"):
            bar.close()
    print(f"edgeseg convert: {decision.summary()}")
    print(f"edgeseg convert: {args.model} -> {rep.output} ({rep.precision}, {rep.size_bytes / 1e6:.1f} MB; "
          "decision recorded in its metadata)")
    return 0
