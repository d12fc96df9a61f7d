"""``edgeseg export-bioimageio``: a model as a BioImage Model Zoo (bioimage.io) package zip."""

from __future__ import annotations

import argparse

DESCRIPTION = "write a BioImage Model Zoo (bioimage.io) package: rdf.yaml, ONNX + TorchScript weights, test tensors"
_EPILOG = """\
examples:
  edgeseg export-bioimageio default -o edgeseg-nuclei.zip
  edgeseg export-bioimageio run/best.pt -o my-nuclei.zip --sample my_fluorescence_image.tif
  bioimageio test edgeseg-nuclei.zip                     # bioimage.io's own test (already run here)
  edgeseg predict images/ -o out/ --model edgeseg-nuclei.zip

The package is tested with bioimageio.core (spec, each weights format, reproduction of the test
output) before it is written; one that fails is not written. Needs: pip install 'edgeseg[bioimageio]'.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export-bioimageio", help=DESCRIPTION, description=DESCRIPTION, epilog=_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="'default' (bundled) or a .pt checkpoint")
    p.add_argument("-o", "--output", required=True, help="the package, a .zip file")
    p.add_argument("--sample", default=None,
                   help="image for the test tensors and the cover (a fluorescence image, or a stained "
                        "one; centre crop of at most 256 x 256 px; default: a bundled DSB2018 image)")
    p.add_argument("--name", default="edgeseg nuclei U-Net", help="model name in rdf.yaml (default: %(default)s)")
    p.add_argument("--no-test", action="store_true",
                   help="skip bioimageio.core's test of the package (default: run it, write only if it passes)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ._paths import check_writable

    if not str(args.output).lower().endswith(".zip"):
        raise InputError(f"-o/--output {args.output}: a bioimage.io package is a .zip file; e.g. -o "
                         "edgeseg-nuclei.zip")
    check_writable(args.output, option="-o/--output", inputs=(args.model, args.sample))
    from edgeseg.converters.bioimageio import export_bioimageio

    rep = export_bioimageio(args.model, args.output, sample=args.sample, name=args.name,
                            test=not args.no_test)
    print(f"edgeseg export-bioimageio: {args.model} -> {rep.path} (bioimage.io spec {rep.format_version}, "
          f"weights {' + '.join(rep.weights)}, {rep.size_bytes / 1e6:.1f} MB; bioimageio.core test: "
          f"{rep.test_status})")
    return 0
