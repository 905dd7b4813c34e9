"""Optimizers with PyTorch's update rules (torch.optim), updating Parameter.data in place.

Each keeps per-parameter state arrays; ``state_dict()`` returns a flat dict of scalars
(JSON-able) and arrays named ``"<state>.<param index>"`` (safetensors-able).
"""

import math

import numpy as np


class Optimizer:
    _hyper: tuple[str, ...] = ()   # scalar settings saved in state_dict
    _slots: tuple[str, ...] = ()   # per-parameter state arrays

    def __init__(self, params, lr: float):
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        if lr < 0:
            raise ValueError(f"learning rate must be >= 0, got {lr}")
        self.lr = float(lr)
        self.t = 0  # steps taken
        self.state = {slot: [None] * len(self.params) for slot in self._slots}

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        self.t += 1
        for i, p in enumerate(self.params):
            if p.grad is not None:
                self._update(i, p, p.grad)

    def _update(self, i, p, g):
        raise NotImplementedError

    def _slot(self, slot: str, i: int, like: np.ndarray) -> np.ndarray:
        arr = self.state[slot][i]
        if arr is None:
            arr = self.state[slot][i] = np.zeros_like(like)
        return arr

    def state_dict(self) -> dict:
        d = {"type": type(self).__name__, "lr": self.lr, "step": self.t}
        d.update({name: getattr(self, name) for name in self._hyper})
        for slot, arrays in self.state.items():
            for i, arr in enumerate(arrays):
                if arr is not None:
                    d[f"{slot}.{i}"] = arr.copy()
        return d

    def load_state_dict(self, d: dict) -> None:
        if d.get("type") != type(self).__name__:
            raise ValueError(f"state_dict is for {d.get('type')!r}, not {type(self).__name__}")
        self.lr, self.t = float(d["lr"]), int(d["step"])
        for name in self._hyper:
            value = d[name]
            setattr(self, name, tuple(value) if isinstance(value, list) else value)
        self.state = {slot: [None] * len(self.params) for slot in self._slots}
        for key, value in d.items():
            slot, _, index = key.rpartition(".")
            if slot in self.state and index.isdigit():
                i = int(index)
                if i >= len(self.params) or np.shape(value) != self.params[i].data.shape:
                    raise ValueError(f"optimizer state {key!r} does not match the parameters")
                self.state[slot][i] = np.array(value, dtype=self.params[i].data.dtype)

    def __repr__(self):
        hyper = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._hyper)
        return f"{type(self).__name__}(lr={self.lr}, {hyper})"


class SGD(Optimizer):
    """g = grad + wd*w;  b = mu*b + g (b = g at the first step);
    w -= lr * (g + mu*b if nesterov else b)   (plain w -= lr*g when mu = 0)."""

    _hyper = ("momentum", "nesterov", "weight_decay")
    _slots = ("momentum_buffer",)

    def __init__(self, params, lr: float, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0):
        super().__init__(params, lr)
        if nesterov and momentum <= 0:
            raise ValueError("Nesterov momentum requires momentum > 0")
        self.momentum, self.nesterov, self.weight_decay = float(momentum), bool(nesterov), float(weight_decay)

    def _update(self, i, p, g):
        if self.weight_decay:
            g = g + self.weight_decay * p.data
        if self.momentum:
            buf = self.state["momentum_buffer"][i]
            if buf is None:
                buf = self.state["momentum_buffer"][i] = g.copy()
            else:
                buf *= self.momentum
                buf += g
            g = g + self.momentum * buf if self.nesterov else buf
        p.data -= self.lr * g


class Adam(Optimizer):
    """m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
    w -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps).   Adam adds wd*w to g (L2)."""

    _hyper = ("betas", "eps", "weight_decay")
    _slots = ("exp_avg", "exp_avg_sq")
    _decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(params, lr)
        self.betas, self.eps, self.weight_decay = (float(betas[0]), float(betas[1])), float(eps), float(weight_decay)

    def _update(self, i, p, g):
        b1, b2 = self.betas
        if self.weight_decay:
            if self._decoupled:
                p.data *= 1.0 - self.lr * self.weight_decay
            else:
                g = g + self.weight_decay * p.data
        m, v = self._slot("exp_avg", i, p.data), self._slot("exp_avg_sq", i, p.data)
        m *= b1
        m += (1.0 - b1) * g
        v *= b2
        v += (1.0 - b2) * np.square(g)
        denom = np.sqrt(v)
        denom *= 1.0 / math.sqrt(1.0 - b2 ** self.t)
        denom += self.eps
        p.data -= (self.lr / (1.0 - b1 ** self.t)) * m / denom


class AdamW(Adam):
    """Adam with decoupled weight decay: w *= 1 - lr*wd before the Adam step."""

    _decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01):
        super().__init__(params, lr, betas, eps, weight_decay)


class RMSprop(Optimizer):
    """s = a s + (1-a) g^2;  d = sqrt(s) + eps;  with momentum mu: b = mu b + g/d, w -= lr b;
    else w -= lr g/d.  g includes wd*w."""

    _hyper = ("alpha", "eps", "momentum", "weight_decay")
    _slots = ("square_avg", "momentum_buffer")

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params, lr)
        self.alpha, self.eps = float(alpha), float(eps)
        self.momentum, self.weight_decay = float(momentum), float(weight_decay)

    def _update(self, i, p, g):
        if self.weight_decay:
            g = g + self.weight_decay * p.data
        s = self._slot("square_avg", i, p.data)
        s *= self.alpha
        s += (1.0 - self.alpha) * np.square(g)
        denom = np.sqrt(s)
        denom += self.eps
        if self.momentum:
            buf = self._slot("momentum_buffer", i, p.data)
            buf *= self.momentum
            buf += g / denom
            p.data -= self.lr * buf
        else:
            p.data -= self.lr * g / denom


def clip_grad_norm(params, max_norm: float) -> float:
    """Scale all gradients by min(1, max_norm / (||g|| + 1e-6)), ||g|| the global L2 norm.

    Returns the norm before clipping (as torch.nn.utils.clip_grad_norm_).
    """
    grads = [p.grad for p in params if p.grad is not None]
    total = math.sqrt(sum(float(np.dot(g.ravel(), g.ravel())) for g in grads))
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for g in grads:
            g *= coef
    return total
