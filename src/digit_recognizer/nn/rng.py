"""The engine's single source of randomness.

Weight initialisation and dropout draw from one module-level NumPy generator
(PCG64), so ``manual_seed(0)`` makes a whole run reproducible. Any layer also
accepts an explicit ``rng=`` generator, which then takes precedence.
"""

import copy

import numpy as np

_generator = np.random.default_rng(0)


def manual_seed(seed: int) -> None:
    """Reseed the module-level generator (like ``torch.manual_seed``)."""
    global _generator
    _generator = np.random.default_rng(seed)


def generator() -> np.random.Generator:
    """The current module-level generator."""
    return _generator


def resolve(rng: np.random.Generator | None) -> np.random.Generator:
    """``rng`` if given, else the module-level generator (looked up at call time)."""
    return _generator if rng is None else rng


def get_rng_state() -> dict:
    """The generator's state as a JSON-serialisable dict (plain ints and strings)."""
    return copy.deepcopy(_generator.bit_generator.state)


def set_rng_state(state: dict) -> None:
    """Restore a state returned by :func:`get_rng_state`."""
    if not isinstance(state, dict) or state.get("bit_generator") != "PCG64":
        raise ValueError("set_rng_state expects the dict returned by get_rng_state()")
    _generator.bit_generator.state = copy.deepcopy(state)
