"""Sequential: layers applied in order, on the fast path or the reference path (``nn.fast``)."""

import numpy as np

from . import fast
from .module import Layer, Parameter


class Sequential:
    """Layers applied in order: forward left to right, backward right to left.

    ``forward`` runs each layer's fast version when ``nn.fast`` is on (the default) and the
    layer has one, else the layer's own (reference) ``forward``; ``backward`` takes, layer by
    layer, the path its forward pass took. ``state_dict()`` keys follow ``torch.nn.Sequential``:
    ``"<index>.<name>"``.
    """

    def __init__(self, *layers: Layer):
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        for layer in layers:
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential takes layers, got {type(layer).__name__}")
        self.layers = list(layers)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if fast.enabled():
            return fast.forward(self.layers, x, training)
        for layer in self.layers:
            x = layer.forward(x, training=training)
        return x

    __call__ = forward

    def backward(self, grad: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """Backpropagate dL/d(output); fills every parameter's ``.grad`` and returns dL/dx.

        With ``input_grad=False`` (training, where dL/dx is not wanted) the layers below the
        first layer with parameters are skipped, and that layer does not compute its input
        gradient; returns None.
        """
        if input_grad:
            for layer in reversed(self.layers):
                grad = fast.backward(layer, grad)
            return grad
        first = next((i for i, layer in enumerate(self.layers) if layer.parameters()), None)
        if first is not None:
            for layer in reversed(self.layers[first + 1:]):
                grad = fast.backward(layer, grad)
            fast.backward(self.layers[first], grad, input_grad=False)
        return None

    def parameters(self) -> list[Parameter]:
        return [p for layer in self.layers for p in layer.parameters()]

    def state_dict(self) -> dict[str, np.ndarray]:
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.state_dict().items()}

    def load_state_dict(self, state: dict) -> None:
        per_layer: dict[int, dict] = {}
        for key, value in state.items():
            index, _, name = key.partition(".")
            if not index.isdigit() or int(index) >= len(self.layers):
                raise ValueError(f"unexpected state_dict key {key!r} for a Sequential of {len(self)} layers")
            per_layer.setdefault(int(index), {})[name] = value
        for i, layer in enumerate(self.layers):
            wanted = layer._params + layer._buffers
            if wanted or i in per_layer:
                if i not in per_layer:
                    raise ValueError(f"state_dict has no entries for layer {i} ({layer!r})")
                layer.load_state_dict(per_layer[i])

    def astype(self, dtype) -> "Sequential":
        for layer in self.layers:
            layer.astype(dtype)
        return self

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Sequential(*self.layers[index])
        return self.layers[index]

    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def __repr__(self):
        inner = "".join(f"\n  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential({inner}\n)"
