"""`digits explain IMAGE`: one figure of what the network looks at for an image."""

from __future__ import annotations

from pathlib import Path

from digit_recognizer.errors import DigitsError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "explain", help="show what the network looks at: saliency, first-layer activations, top 3",
        description="Preprocess IMAGE exactly as `digits predict` does, then save one figure with the "
                    "network's input, the saliency map (gradient of the predicted class's score with "
                    "respect to each input pixel), the first layer's activations and the top 3 classes.")
    p.add_argument("image", type=Path, metavar="IMAGE", help="an image file (photo, scan, drawing)")
    p.add_argument("--model", type=Path, default=None, help="model file (default: the model shipped with the package)")
    p.add_argument("--out", type=Path, default=None, metavar="PNG",
                   help="where to save the figure (default: IMAGE-NAME-explained.png here)")
    p.add_argument("--deskew", action="store_true", help="straighten a slanted digit first, as `digits predict --deskew`")
    p.set_defaults(func=run)


def run(args) -> int:
    from digit_recognizer import explain, modelfile, plotting, preprocess

    out = args.out or Path(f"{args.image.stem}-explained.png")
    model = modelfile.load(args.model)  # None: the shipped model
    try:
        image = preprocess.to_mnist(preprocess.load_image(args.image), deskew=args.deskew)
    except DigitsError as error:
        raise DigitsError(f"{args.image}: {error}") from None
    result = explain.explain(model, image)
    classes = model.classes
    best, confidence = result["top_k"][0]
    fig = plotting.plot_explanation(result["image"], result["saliency"], result["activations"], result["top_k"],
                                    classes, title=f"{args.image.name}: predicted {classes[best]} ({confidence:.1%})")
    supported = fig.canvas.get_supported_filetypes()
    if out.suffix.lower().lstrip(".") not in supported:
        raise DigitsError(f"cannot save a figure as {out.name!r}; use one of .{', .'.join(sorted(supported))}")
    try:
        plotting.save(fig, out)
    except OSError as error:
        raise DigitsError(f"cannot write {out}: {error.strerror or error}") from None
    print(f"{args.image}: {classes[best]} ({confidence:.1%}); top 3: "
          + ", ".join(f"{classes[k]} {p:.3f}" for k, p in result["top_k"]))
    print(f"figure: {out}")
    return 0
