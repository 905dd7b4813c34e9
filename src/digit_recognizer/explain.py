"""What the network looks at: saliency (input gradient), first-layer activations, top classes.

The saliency of class c for an input image x (28x28, pixels in [0, 1]) is

    S = | d z_c / d x |      z = net((x - mean) / std), the logits (pre-softmax scores)

computed with the engine's own backward pass, in inference mode: batch norm uses its
running statistics and dropout is the identity, exactly as when predicting. By the chain
rule through the input normalisation, d z_c / d x = (d z_c / d x_norm) / std.
"""

from __future__ import annotations

import numpy as np

from digit_recognizer import nn

# Layers whose inference behaviour differs from training: handled here in inference mode.
_BATCHNORM = (nn.BatchNorm1D, nn.BatchNorm2D)
# Layers that only reshape or act elementwise after the first weight layer: they belong to
# its "activation" (e.g. Conv2D -> BatchNorm2D -> ReLU).
_ELEMENTWISE = _BATCHNORM + (nn.ReLU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.GELU)


def _score_layers(net) -> list:
    """The layers producing logits: a trailing Softmax is dropped, so scores are pre-softmax."""
    layers = list(net.layers)
    if layers and isinstance(layers[-1], nn.Softmax):
        layers = layers[:-1]
    return layers


def logits(net, x: np.ndarray) -> np.ndarray:
    """Inference-mode scores (N, K) for normalised input x (N, 1, 28, 28)."""
    for layer in _score_layers(net):
        x = layer.forward(x, training=False)
    return x


def input_gradient(net, x: np.ndarray, class_index) -> tuple[np.ndarray, np.ndarray]:
    """(logits (N, K), d logits[n, class_index[n]] / d x (same shape as x)) in inference mode.

    Layers without train/inference differences run ``forward(training=True)``, which gives
    the same output and keeps the cache that ``backward`` needs. Dropout is skipped (the
    identity at inference) and batch norm, an affine map y = x * g / sqrt(running_var + eps) + b
    at inference, is differentiated here. Parameter gradients are restored afterwards.
    """
    layers = [layer for layer in _score_layers(net) if not isinstance(layer, nn.Dropout)]
    saved_grads = [(p, p.grad) for p in net.parameters()]
    try:
        h = x
        for layer in layers:
            h = layer.forward(h, training=not isinstance(layer, _BATCHNORM))
        scores = h
        grad = np.zeros_like(scores)
        grad[np.arange(len(scores)), np.broadcast_to(class_index, (len(scores),))] = 1.0
        for layer in reversed(layers):
            if isinstance(layer, _BATCHNORM):
                scale = layer.weight.data / np.sqrt(layer.running_var + layer.eps)
                grad = grad * scale.astype(grad.dtype).reshape((1, -1) + (1,) * (grad.ndim - 2))
            else:
                grad = layer.backward(grad)
    finally:
        for p, g in saved_grads:
            p.grad = g
    return scores, grad


def layer_outputs(net, x: np.ndarray) -> list[tuple[object, np.ndarray]]:
    """(layer, its output) for every layer, in order, in inference mode, for normalised
    input x (N, 1, 28, 28); the last output is the logits (a trailing Softmax is left out)."""
    outputs = []
    for layer in _score_layers(net):
        x = layer.forward(x, training=False)
        outputs.append((layer, x))
    return outputs


def first_layer_activations(net, x: np.ndarray) -> np.ndarray:
    """Output of the first weight layer (Conv2D or Dense) and the elementwise layers after it.

    For a convolutional first layer: feature maps (N, C, H, W); for a dense one: (N, F).
    """
    layers = list(net.layers)
    first = next((i for i, layer in enumerate(layers) if layer.parameters()), None)
    if first is None:
        raise ValueError("the network has no layer with weights")
    end = first + 1
    while end < len(layers) and isinstance(layers[end], _ELEMENTWISE):
        end += 1
    for layer in layers[:end]:
        x = layer.forward(x, training=False)
    return x


def explain(model, image: np.ndarray, top_k: int = 3) -> dict:
    """Everything ``digits explain`` shows, for one preprocessed image (28, 28) in [0, 1].

    Returns {"image", "predicted", "probabilities" (K,), "top_k" [(class, p)], "saliency" (28, 28),
    "activations" (C, H, W) or (F,)}; the saliency is for the predicted class.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.shape != (28, 28):
        raise ValueError(f"explain expects one (28, 28) image, got shape {image.shape}")
    mean = float(model.metadata["mean"])
    std = float(model.metadata["std"])
    x = ((image - mean) / std)[None, None].astype(np.float32)
    scores = logits(model.net, x)
    # Calibrated, as every prediction: softmax(z / T) with the model's temperature.
    probabilities = nn.softmax(scores / np.float32(model.metadata.get("temperature", 1.0)))[0]
    predicted = int(np.argmax(probabilities))
    _, grad = input_gradient(model.net, x, predicted)
    order = np.argsort(-probabilities, kind="stable")[:top_k]
    return {
        "image": image,
        "predicted": predicted,
        "probabilities": probabilities,
        "top_k": [(int(k), float(probabilities[k])) for k in order],
        "saliency": np.abs(grad[0, 0]) / std,
        "activations": first_layer_activations(model.net, x)[0],
    }
