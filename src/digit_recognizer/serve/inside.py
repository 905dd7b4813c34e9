"""``POST /api/explain``: what happens inside the network while it reads one image.

The answer is ``/api/predict``'s, from the same preprocessing and the same forward
pass, plus the page's "inside the network" view of the first digit read:

- ``steps``: the preprocessing pictures (those ``digits predict --show-steps`` writes),
- ``input``: the 28x28 image the network reads,
- ``saliency``: | d score / d pixel | of the predicted class over that input
  (``explain.input_gradient``: the engine's own backward pass),
- ``layers``: every layer's output in order (``explain.layer_outputs``: the engine's own
  forward pass, in inference mode): feature maps as one picture of tiles, vectors as numbers.

For a number, ``position`` chooses which of its digits is explained (default the first).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from digit_recognizer import explain, preprocess
from digit_recognizer.serve import pictures
from digit_recognizer.serve.inference import read_extraction

MAX_VALUES = 2048  # a vector longer than this is sent as a picture strip instead of numbers

_STEP_NAMES = {"gray": "grey levels", "ink": "ink", "mask": "ink mask and digit boxes", "digit": "28x28 input"}


def describe(layer) -> str:
    """One line naming a layer and its settings, e.g. "Conv2D 5x5, 1 -> 32 channels"."""
    kind = type(layer).__name__
    config = layer.config() if hasattr(layer, "config") else {}
    if kind == "Conv2D":
        k = config["kernel_size"]
        text = f"Conv2D {k}\u00d7{k}, {config['in_channels']} \u2192 {config['out_channels']} channels"
        if config.get("stride", 1) != 1:
            text += f", stride {config['stride']}"
        return text
    if kind == "Dense":
        return f"Dense {config['in_features']} \u2192 {config['out_features']}"
    if kind in ("MaxPool2D", "AvgPool2D"):
        k = config["kernel_size"]
        return f"{kind} {k}\u00d7{k}"
    if kind == "Dropout":
        return f"Dropout p={config.get('p', 0.5):g} (off while reading)"
    return kind


def _layer_view(index: int, layer, output: np.ndarray, last: bool) -> dict:
    values = output[0]
    view = {"index": index, "type": type(layer).__name__, "label": describe(layer),
            "shape": list(values.shape), "min": round(float(values.min()), 4),
            "max": round(float(values.max()), 4), "role": "logits" if last else "hidden"}
    if values.ndim == 3:
        view["maps"] = pictures.data_url(pictures.tiles(values))
    elif values.size <= MAX_VALUES:
        view["values"] = [round(float(v), 4) for v in values.ravel()]
    else:
        view["maps"] = pictures.data_url(pictures.tiles(values.reshape(1, 1, -1)))
    return view


def _step_label(name: str, digits: int = 1) -> str:
    """Words for a step picture named like "3-mask" or "4-digit1" (``digits``: how many were read)."""
    stem = name.split("-", 1)[-1]
    kind = stem.rstrip("0123456789")
    label = _STEP_NAMES.get(kind, kind.replace("-", " "))
    if kind == "digit" and digits > 1:
        label += f" {int(stem[len(kind):]) + 1} of {digits}"
    return label


def run_explanation(model, source, top_k: int, position: int = 0) -> dict:
    """``run_prediction``'s answer plus ``steps``, ``input``, ``saliency`` and ``layers``
    (see the module docstring) for digit ``position`` of those read (the last, if fewer)."""
    extraction = preprocess.extract(source)
    result = read_extraction(model, extraction, top_k)
    position = min(position, len(extraction.digits) - 1)
    digit = extraction.digits[position]
    mean, std = float(model.metadata["mean"]), float(model.metadata["std"])
    x = ((digit - mean) / std)[None, None].astype(np.float32)
    outputs = explain.layer_outputs(model.net, x)
    predicted = int(np.argmax(outputs[-1][1][0]))
    _, grad = explain.input_gradient(model.net, x, predicted)
    saliency = np.abs(grad[0, 0]) / std  # d/dx of (x - mean) / std: see explain.py
    result["steps"] = [{"name": name, "label": _step_label(name, len(extraction.digits)),
                        "image": pictures.data_url(image)}
                       for name, image in preprocess.step_images(extraction)]
    grey = Image.fromarray(np.rint(np.clip(digit, 0, 1) * 255).astype(np.uint8))
    result["input"] = pictures.data_url(grey)
    result["saliency"] = pictures.data_url(pictures.heat_over(digit, saliency))
    result["explained"] = {"digit": predicted, "position": position}
    result["layers"] = [_layer_view(i, layer, output, i == len(outputs) - 1)
                        for i, (layer, output) in enumerate(outputs)]
    return result
