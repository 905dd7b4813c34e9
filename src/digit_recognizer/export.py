"""Export a trained model to ONNX, layer by layer, with the ``onnx`` helper API.

The graph takes what ``Model.predict_proba`` takes -- ``image``: float32
``(batch, 1, 28, 28)`` in [0, 1], white digit on black -- and bakes the input
normalisation ``(x - mean) / std`` in as its first two nodes, so a caller
needs nothing but onnxruntime and the 28x28 image from ``preprocess.to_mnist``.
It returns ``logits`` ``(batch, n_classes)`` and ``probabilities`` (their
softmax at the model's calibration temperature, softmax(logits / T), as
``Model.predict_proba``; the last class of a model with one is "not a digit"). Dropout is the identity at inference and is left out; batch norm
becomes ``BatchNormalization`` with the running statistics. The model's
metadata (classes, normalisation, architecture, metrics, version) travels in
the file's ``metadata_props``.

    import onnxruntime as ort
    session = ort.InferenceSession("model.onnx")
    logits, probs = session.run(None, {"image": x})   # x: (N, 1, 28, 28) float32 in [0, 1]
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from digit_recognizer import __version__
from digit_recognizer.errors import DigitsError
from digit_recognizer.extras import install_command

OPSET = 20  # the first opset with Gelu
INPUT = "image"
FORMATS = ("onnx",)


class _Graph:
    """Collects nodes and constant tensors, handing out fresh tensor names."""

    def __init__(self, helper, numpy_helper):
        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes, self.initializers = [], []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, hint: str, value) -> str:
        name = self.name(hint)
        array = np.ascontiguousarray(value, dtype=np.float32)
        self.initializers.append(self.numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, inputs: list[str], out: str | None = None, **attrs) -> str:
        out = out or self.name(op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out


def _pair(value) -> list[int]:
    return [int(v) for v in value] if isinstance(value, (tuple, list)) else [int(value)] * 2


def _pool(op_type):
    def convert(g, layer, x):
        cfg = layer.config()
        kernel = _pair(cfg["kernel_size"])
        stride = _pair(cfg.get("stride") or cfg["kernel_size"])
        return g.op(op_type, [x], kernel_shape=kernel, strides=stride)

    return convert


def _conv(g, layer, x):
    cfg = layer.config()
    kernel = _pair(cfg["kernel_size"])
    pad = _pair(cfg.get("padding", 0))
    w = g.const("conv_w", layer.weight.data)
    b = g.const("conv_b", layer.bias.data)
    return g.op("Conv", [x, w, b], kernel_shape=kernel, strides=_pair(cfg.get("stride", 1)),
                pads=pad + pad)


def _dense(g, layer, x):
    # Gemm: y = x @ W.T + b, with W stored (out, in) as in the engine and PyTorch.
    w = g.const("dense_w", layer.weight.data)
    b = g.const("dense_b", layer.bias.data)
    return g.op("Gemm", [x, w, b], transB=1)


def _batchnorm(g, layer, x):
    args = [layer.weight.data, layer.bias.data, layer.running_mean, layer.running_var]
    names = [g.const(f"bn_{n}", a) for n, a in zip(("scale", "bias", "mean", "var"), args)]
    return g.op("BatchNormalization", [x, *names], epsilon=float(layer.eps))


def _gelu(g, layer, x):
    # The engine's GELU is the tanh form (as torch's approximate="tanh").
    approximate = layer.config().get("approximate", "tanh")
    return g.op("Gelu", [x], approximate="tanh" if approximate == "tanh" else "none")


CONVERTERS = {
    "Conv2D": _conv,
    "Dense": _dense,
    "BatchNorm1D": _batchnorm,
    "BatchNorm2D": _batchnorm,
    "MaxPool2D": _pool("MaxPool"),
    "AvgPool2D": _pool("AveragePool"),
    "GlobalAvgPool2D": lambda g, layer, x: g.op("Flatten", [g.op("GlobalAveragePool", [x])], axis=1),
    "Flatten": lambda g, layer, x: g.op("Flatten", [x], axis=1),
    "ReLU": lambda g, layer, x: g.op("Relu", [x]),
    "LeakyReLU": lambda g, layer, x: g.op(
        "LeakyRelu", [x], alpha=float(layer.config().get("negative_slope", 0.01))),
    "Sigmoid": lambda g, layer, x: g.op("Sigmoid", [x]),
    "Tanh": lambda g, layer, x: g.op("Tanh", [x]),
    "GELU": _gelu,
    "Softmax": lambda g, layer, x: g.op("Softmax", [x], axis=1),
    "Dropout": lambda g, layer, x: x,  # the identity at inference
}


def _import_onnx():
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        raise DigitsError(f"ONNX export needs the onnx package: {install_command('export')}") from None
    return onnx, helper, numpy_helper


def to_onnx(model):
    """Build and check the ONNX graph for ``model`` (a ``modelfile.Model``) -> ``onnx.ModelProto``."""
    onnx, helper, numpy_helper = _import_onnx()
    meta = model.metadata
    classes = list(model.classes)
    g = _Graph(helper, numpy_helper)

    # Bake in the normalisation the Model applies before its network.
    x = g.op("Sub", [INPUT, g.const("mean", meta["mean"])])
    x = g.op("Div", [x, g.const("std", meta["std"])])
    for index, layer in enumerate(model.net.layers):
        kind = type(layer).__name__
        if kind not in CONVERTERS:
            supported = ", ".join(sorted(CONVERTERS))
            raise DigitsError(f"cannot export layer {index} ({kind}) to ONNX; supported layers: {supported}")
        x = CONVERTERS[kind](g, layer, x)

    ends_in_softmax = type(model.net.layers[-1]).__name__ == "Softmax"
    outputs = []
    if ends_in_softmax:
        g.op("Identity", [x], out="probabilities")
    else:
        g.op("Identity", [x], out="logits")
        # Calibrated, as Model.predict_proba: softmax(logits / temperature).
        scaled = g.op("Div", ["logits", g.const("temperature", model.temperature)])
        g.op("Softmax", [scaled], out="probabilities", axis=1)
        outputs.append(helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["batch", len(classes)]))
    outputs.append(helper.make_tensor_value_info("probabilities", onnx.TensorProto.FLOAT, ["batch", len(classes)]))

    graph = helper.make_graph(
        g.nodes,
        "digit_recognizer",
        [helper.make_tensor_value_info(INPUT, onnx.TensorProto.FLOAT, ["batch", 1, 28, 28])],
        outputs,
        initializer=g.initializers,
    )
    proto = helper.make_model(
        graph,
        producer_name="digit-recognizer",
        producer_version=__version__,
        opset_imports=[helper.make_opsetid("", OPSET)],
        doc_string="Handwritten-digit classifier. Input 'image': float32 (batch, 1, 28, 28) in [0, 1], "
                   "white digit on black, MNIST-style (normalisation is part of the graph).",
    )
    proto.ir_version = 9  # readable by onnxruntime >= 1.16
    props = {
        "classes": classes,
        "input": "image: float32 (batch, 1, 28, 28) in [0, 1], white digit on black; "
                 "the graph applies (x - mean) / std itself",
        "mean": meta["mean"],
        "std": meta["std"],
        "temperature": model.temperature,
        "refusal_threshold": model.refusal_threshold,
        "architecture": meta.get("spec"),
        "dataset": meta.get("dataset"),
        "metrics": meta.get("metrics"),
        "model_version": meta.get("version"),
    }
    helper.set_model_props(proto, {k: v if isinstance(v, str) else json.dumps(v) for k, v in props.items()})
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export(model, out: str | Path, format: str = "onnx") -> Path:
    """Write ``model`` to ``out`` in ``format`` (only "onnx" so far) and return the path."""
    if format not in FORMATS:
        raise DigitsError(f"unknown export format {format!r}; choose from: {', '.join(FORMATS)}")
    onnx, _, _ = _import_onnx()
    proto = to_onnx(model)
    out = Path(out)
    if out.parent and not out.parent.exists():
        raise DigitsError(f"cannot write {out}: directory {out.parent} does not exist")
    try:
        onnx.save(proto, str(out))
    except OSError as error:
        raise DigitsError(f"cannot write {out}: {error.strerror or error}") from None
    return out
