"""`digits export [MODEL] --format onnx --out FILE`."""

from __future__ import annotations


def register(subparsers):
    p = subparsers.add_parser(
        "export",
        help="export a model to ONNX",
        description="Export a model to ONNX (input normalisation included in the graph).",
    )
    p.add_argument("model", nargs="?", metavar="MODEL",
                   help="model file (.safetensors); default: the model shipped with the package")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="output format (default: onnx)")
    p.add_argument("--out", required=True, metavar="FILE", help="where to write the exported model")
    p.set_defaults(func=run)


def run(args) -> int:
    from digit_recognizer import export, modelfile

    model = modelfile.load(args.model)
    path = export.export(model, args.out, format=args.format)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, ONNX opset {export.OPSET})")
    return 0
