"""Learning-rate schedules: callables ``schedule(step) -> lr`` (step counts from 0).

Use: ``opt.lr = schedule(step)`` before each ``opt.step()``. The formulas follow the
matching torch.optim.lr_scheduler classes.
"""

import math


class StepLR:
    """lr = base_lr * gamma ** (step // step_size)."""

    def __init__(self, base_lr: float, step_size: int, gamma: float = 0.1):
        if step_size < 1:
            raise ValueError(f"step_size must be >= 1, got {step_size}")
        self.base_lr, self.step_size, self.gamma = base_lr, step_size, gamma

    def __call__(self, step: int) -> float:
        return self.base_lr * self.gamma ** (step // self.step_size)


class CosineLR:
    """lr = min_lr + (base_lr - min_lr) (1 + cos(pi * t / total_steps)) / 2, t = min(step, total_steps)."""

    def __init__(self, base_lr: float, total_steps: int, min_lr: float = 0.0):
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        self.base_lr, self.total_steps, self.min_lr = base_lr, total_steps, min_lr

    def __call__(self, step: int) -> float:
        t = min(step, self.total_steps)
        return self.min_lr + (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * t / self.total_steps)) / 2


class OneCycleLR:
    """One-cycle policy (Smith): cosine from max_lr/div_factor up to max_lr over the first
    pct_start of the steps, then cosine down to max_lr/(div_factor*final_div_factor)."""

    def __init__(self, max_lr: float, total_steps: int, pct_start: float = 0.3,
                 div_factor: float = 25.0, final_div_factor: float = 1e4):
        if total_steps < 2:
            raise ValueError(f"total_steps must be >= 2, got {total_steps}")
        self.max_lr, self.total_steps, self.pct_start = max_lr, total_steps, pct_start
        self.div_factor, self.final_div_factor = div_factor, final_div_factor
        self.initial_lr = max_lr / div_factor
        self.min_lr = self.initial_lr / final_div_factor
        self.peak_step = float(pct_start * total_steps) - 1

    @staticmethod
    def _cos(start, end, pct):
        return end + (start - end) / 2 * (math.cos(math.pi * pct) + 1)

    def __call__(self, step: int) -> float:
        step = min(step, self.total_steps - 1)
        if step <= self.peak_step:
            return self._cos(self.initial_lr, self.max_lr, step / self.peak_step if self.peak_step > 0 else 1.0)
        pct = (step - self.peak_step) / (self.total_steps - 1 - self.peak_step)
        return self._cos(self.max_lr, self.min_lr, pct)


class LinearWarmup:
    """Linear warm-up, then another schedule (or a constant).

    For step < warmup_steps: lr = target(0) * (start_factor + (1 - start_factor) * step / warmup_steps);
    afterwards lr = target(step - warmup_steps). ``after`` is a schedule or a constant lr.
    """

    def __init__(self, after, warmup_steps: int, start_factor: float = 0.0):
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        self.after = after if callable(after) else (lambda step, lr=float(after): lr)
        self.warmup_steps, self.start_factor = warmup_steps, start_factor

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            factor = self.start_factor + (1.0 - self.start_factor) * step / self.warmup_steps
            return self.after(0) * factor
        return self.after(step - self.warmup_steps)
