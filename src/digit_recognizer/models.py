"""The architecture zoo and a builder from a spec.

A *spec* is a list of layers, each a dict ``{"type": "Conv2D", **constructor
kwargs}`` naming a layer class of :mod:`digit_recognizer.nn`. It is plain data,
so it travels inside model files (JSON) and can be written by hand as TOML::

    # my-net.toml
    [[layers]]
    type = "Conv2D"
    out_channels = 16
    kernel_size = 3
    padding = 1

    [[layers]]
    type = "ReLU"

    [[layers]]
    type = "Flatten"

    [[layers]]
    type = "Dense"
    out_features = 10

Input sizes (``in_channels``, ``in_features``, ``num_features``) may be left
out: :func:`resolve` fills them in by pushing a dummy batch through the
layers, and checks that the network maps a (N, 1, 28, 28) batch to
(N, n_classes) logits.
"""

from __future__ import annotations

import copy
import inspect
import sys
from pathlib import Path

import numpy as np

from digit_recognizer import nn
from digit_recognizer.errors import DigitsError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

INPUT_SHAPE = (1, 28, 28)

#: Layer types a spec may use (the trainable and stateless layers of the engine).
LAYER_TYPES = (
    "Dense", "Conv2D", "MaxPool2D", "AvgPool2D", "GlobalAvgPool2D", "Flatten", "Dropout",
    "BatchNorm1D", "BatchNorm2D", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU",
)

# Which constructor argument is the size of the incoming tensor, read from its axis 1.
_INPUT_SIZE_ARG = {
    "Dense": "in_features",
    "Conv2D": "in_channels",
    "BatchNorm1D": "num_features",
    "BatchNorm2D": "num_features",
}


def _conv_block(cin: int, cout: int, kernel: int) -> list[dict]:
    """Conv -> 2x2 max-pool -> batch norm -> ReLU. Pooling before BN and ReLU makes
    those two 4x cheaper; max-pooling commutes with ReLU, so little is lost."""
    return [
        {"type": "Conv2D", "in_channels": cin, "out_channels": cout,
         "kernel_size": kernel, "padding": kernel // 2},
        {"type": "MaxPool2D", "kernel_size": 2},
        {"type": "BatchNorm2D", "num_features": cout},
        {"type": "ReLU"},
    ]


ARCHITECTURES: dict[str, list[dict]] = {
    # A classic multilayer perceptron: 784-256-128-10.
    "mlp": [
        {"type": "Flatten"},
        {"type": "Dense", "in_features": 784, "out_features": 256},
        {"type": "ReLU"},
        {"type": "Dense", "in_features": 256, "out_features": 128},
        {"type": "ReLU"},
        {"type": "Dense", "in_features": 128, "out_features": 10},
    ],
    # LeCun et al. 1998, with ReLU and max pooling: 28x28 -> 6@28x28 -> 6@14x14
    # -> 16@10x10 -> 16@5x5 -> 120 -> 84 -> 10.
    "lenet5": [
        {"type": "Conv2D", "in_channels": 1, "out_channels": 6, "kernel_size": 5, "padding": 2},
        {"type": "ReLU"},
        {"type": "MaxPool2D", "kernel_size": 2},
        {"type": "Conv2D", "in_channels": 6, "out_channels": 16, "kernel_size": 5},
        {"type": "ReLU"},
        {"type": "MaxPool2D", "kernel_size": 2},
        {"type": "Flatten"},
        {"type": "Dense", "in_features": 400, "out_features": 120},
        {"type": "ReLU"},
        {"type": "Dense", "in_features": 120, "out_features": 84},
        {"type": "ReLU"},
        {"type": "Dense", "in_features": 84, "out_features": 10},
    ],
    # The default: three conv blocks with batch norm (28 -> 14 -> 7 -> 3), then a
    # dropout-regularised dense head. About 8 M multiply-adds per image, sized to
    # train to >99.5% on two CPU cores in well under an hour.
    "cnn": [
        *_conv_block(1, 32, 5),
        *_conv_block(32, 64, 3),
        *_conv_block(64, 128, 3),
        {"type": "Flatten"},
        {"type": "Dropout", "p": 0.3},
        {"type": "Dense", "in_features": 1152, "out_features": 128},
        {"type": "BatchNorm1D", "num_features": 128},
        {"type": "ReLU"},
        {"type": "Dropout", "p": 0.3},
        {"type": "Dense", "in_features": 128, "out_features": 10},
    ],
}


def _make_layer(index: int, layer: dict):
    kwargs = {k: v for k, v in layer.items() if k != "type"}
    cls = getattr(nn, layer["type"])
    parameters = inspect.signature(cls).parameters
    accepted = [name for name in parameters if name != "rng"]
    unknown = [name for name in kwargs if name not in accepted]
    if unknown:
        takes = f"takes {', '.join(accepted)}" if accepted else "takes no arguments"
        raise DigitsError(f"layer {index} ({layer['type']}): unknown argument {', '.join(map(repr, unknown))}; "
                          f"{layer['type']} {takes}")
    missing = [name for name, p in parameters.items() if p.default is p.empty and name not in kwargs]
    if missing:
        raise DigitsError(f"layer {index} ({layer['type']}): missing {', '.join(missing)}")
    try:
        return getattr(nn, layer["type"])(**kwargs)
    except (TypeError, ValueError) as error:
        raise DigitsError(f"layer {index} ({layer['type']}): bad arguments {kwargs}: {error}") from None


def _check_layer(index: int, layer) -> dict:
    if not isinstance(layer, dict):
        raise DigitsError(f"layer {index}: expected a table of settings, got {layer!r}")
    kind = layer.get("type")
    if kind not in LAYER_TYPES:
        if kind == "Softmax":
            raise DigitsError(
                f"layer {index}: Softmax is not allowed; the network must end in logits "
                "(the loss and predict_proba apply softmax)"
            )
        raise DigitsError(
            f"layer {index}: unknown type {kind!r}; choose from {', '.join(LAYER_TYPES)}"
        )
    return dict(layer)


def _build_layers(spec, n_classes: int, input_shape) -> tuple[list[dict], list]:
    if not isinstance(spec, (list, tuple)) or not spec:
        raise DigitsError("a model spec must be a non-empty list of layers")
    resolved, modules = [], []
    x = np.zeros((2, *input_shape), dtype=np.float32)
    for index, raw in enumerate(spec):
        layer = _check_layer(index, raw)
        if layer["type"] == "Dense" and x.ndim != 2:
            raise DigitsError(f"layer {index} (Dense) needs a flat input, but its input has shape "
                              f"{tuple(x.shape[1:])} per image; add a Flatten layer before it")
        size_arg = _INPUT_SIZE_ARG.get(layer["type"])
        if size_arg and size_arg not in layer:
            layer[size_arg] = int(x.shape[1])
        module = _make_layer(index, layer)
        try:
            x = module.forward(x, training=False)
        except (ValueError, IndexError) as error:
            raise DigitsError(
                f"layer {index} ({layer['type']}) does not fit its input of shape "
                f"{tuple(x.shape[1:])} (per image): {error}"
            ) from None
        resolved.append(layer)
        modules.append(module)
    if x.ndim != 2 or x.shape[1] != n_classes:
        raise DigitsError(
            f"the network outputs shape {tuple(x.shape[1:])} per image; it must output "
            f"{n_classes} class scores (end with a Dense layer with out_features = {n_classes})"
        )
    return resolved, modules


def resolve(spec: list[dict], n_classes: int = 10, input_shape=INPUT_SHAPE) -> list[dict]:
    """Validate a spec and fill in omitted input sizes; returns a complete copy.

    Raises DigitsError naming the layer when a type or argument is wrong, the
    shapes do not chain, or the output is not (N, n_classes).
    """
    return _build_layers(spec, n_classes, input_shape)[0]


def build(spec: list[dict], n_classes: int = 10, input_shape=INPUT_SHAPE) -> nn.Sequential:
    """Build a freshly initialised network from a spec (validated as by :func:`resolve`)."""
    return nn.Sequential(*_build_layers(spec, n_classes, input_shape)[1])


def parse_spec(text: str, source: str = "model spec") -> list[dict]:
    """Parse TOML text holding a ``[[layers]]`` array of tables into a spec."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise DigitsError(f"cannot read {source}: {error}") from None
    layers = document.get("layers")
    if not isinstance(layers, list) or not layers:
        raise DigitsError(f"{source}: a model spec needs a [[layers]] array of tables")
    return [_check_layer(i, layer) for i, layer in enumerate(layers)]


def load_spec(path: str | Path) -> list[dict]:
    """Read a TOML spec file; DigitsError if it is missing or malformed."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DigitsError(f"no such model spec file: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DigitsError(f"cannot read model spec {path}: {error}") from None
    return parse_spec(text, f"model spec {path}")


#: Recipes shipped with the package: a TOML spec plus a [training] table of settings.
RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
#: The recipe `digits train` follows when no --model is given: the shipped model's.
DEFAULT_RECIPE = "digits"


def _recipe_file(name_or_path: str) -> Path | None:
    """The TOML file a model name or path refers to: a shipped recipe or a .toml path."""
    if name_or_path in ARCHITECTURES:
        return None
    recipe = RECIPES_DIR / f"{name_or_path}.toml"
    if "/" not in name_or_path and recipe.is_file():
        return recipe
    path = Path(name_or_path)
    return path if path.suffix.lower() == ".toml" or path.exists() else None


def get_spec(name_or_path: str) -> tuple[str, list[dict]]:
    """Return (name, spec) for an architecture name ("cnn"), a shipped recipe ("digits")
    or a path to a TOML spec."""
    if name_or_path in ARCHITECTURES:
        return name_or_path, copy.deepcopy(ARCHITECTURES[name_or_path])
    recipe = _recipe_file(name_or_path)
    if recipe is not None and recipe.parent == RECIPES_DIR:
        return name_or_path, load_spec(recipe)
    path = Path(name_or_path)
    if path.suffix.lower() == ".toml" or path.exists():
        return path.stem, load_spec(path)
    raise DigitsError(
        f"unknown model {name_or_path!r}; choose {', '.join([*ARCHITECTURES, DEFAULT_RECIPE])} "
        "or a .toml spec file"
    )


def load_training(name_or_path: str) -> dict:
    """The [training] table of a recipe or TOML spec (settings for `digits train`), {} if none."""
    path = _recipe_file(name_or_path)
    if path is None or not path.is_file():
        return {}
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise DigitsError(f"cannot read model spec {path}: {error}") from None
    training = document.get("training", {})
    if not isinstance(training, dict):
        raise DigitsError(f"model spec {path}: [training] must be a table of settings")
    return training
