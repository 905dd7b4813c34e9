"""Model files: one ``.safetensors`` file of tensors plus JSON metadata. Never pickle.

Layout of a model file::

    tensors            the network's state_dict ("0.weight", "1.running_mean", ...)
    "checkpoint/..."   extra tensors of a training checkpoint (optimizer state, best
                       weights); ignored when the file is loaded as a model
    __metadata__       {"format": "digit-recognizer", "spec": JSON, "mean": JSON,
                        "std": JSON, "classes": JSON, "dataset": JSON, "metrics": JSON,
                        "version": JSON, "command": JSON, "input_shape": JSON, ...}

Every metadata value is a JSON document (safetensors metadata is str -> str).
Anything that is not such a file is refused with one clear line
(:class:`DigitsError`): a missing or truncated file, a pickle renamed
``.safetensors``, a corrupt header, missing metadata, tensors that do not fit
the architecture.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
from safetensors.numpy import load as _st_load
from safetensors.numpy import save as _st_save

from digit_recognizer import calibration, models, nn
from digit_recognizer.errors import DigitsError
from digit_recognizer.files import atomic_write, read_regular_file

FORMAT = "digit-recognizer"
REQUIRED_METADATA = ("spec", "mean", "std", "classes")
CHECKPOINT_PREFIX = "checkpoint/"
PRETRAINED_NAME = "mnist-cnn.safetensors"
#: The name of the class a model may have beside the digits, for anything that is not one.
NOT_A_DIGIT = "not a digit"
_MAX_HEADER = 100 * 1024 * 1024
MAX_FILE_BYTES = 2**30  # far above any network here (the largest is a few MB)


def default_model_path() -> Path:
    """The pretrained model shipped inside the package."""
    return Path(__file__).resolve().parent / "pretrained" / PRETRAINED_NAME


# --------------------------------------------------------------------------- raw files

def _to_json(value):
    """json.dumps fallback for NumPy scalars and arrays."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in model metadata")


def write(path: str | Path, tensors: dict[str, np.ndarray], metadata: dict) -> Path:
    """Atomically write tensors + JSON metadata: a temp file in the same folder, then rename.

    A crash mid-write leaves the previous file intact, never a half-written one.
    """
    path = Path(path)
    header = {"format": FORMAT}
    header.update({key: json.dumps(value, default=_to_json) for key, value in metadata.items()})
    arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    return atomic_write(path, _st_save(arrays, metadata=header))


def _sniff(path: Path, data: bytes) -> None:
    """Name the common wrong files before parsing them as safetensors."""
    # A safetensors header length can also start with 0x80 0x02..0x05 (e.g. 896 bytes = 80 03 00..),
    # but its JSON header then starts at byte 8.
    if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05") and data[8:9] != b"{":
        raise DigitsError(
            f"{path} is a Python pickle, not a safetensors model; pickles are never loaded "
            "because they can run arbitrary code"
        )
    if data[:4] == b"PK\x03\x04":
        raise DigitsError(
            f"{path} is a zip archive (a PyTorch .pt checkpoint?), not a safetensors model; "
            "pickled checkpoints are never loaded"
        )


def read(path: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """Read and check a digit-recognizer safetensors file; returns (tensors, metadata)."""
    path = Path(path)
    try:
        data = read_regular_file(path, MAX_FILE_BYTES)
    except IsADirectoryError:
        raise DigitsError(f"{path} is a directory, not a model file") from None
    except DigitsError as error:  # not a regular file, or too large
        raise DigitsError(f"cannot read model file {path}: {error}") from None
    except FileNotFoundError:
        raise DigitsError(f"no such model file: {path}") from None
    except OSError as error:
        raise DigitsError(f"cannot read model file {path}: {error.strerror}") from None
    if len(data) < 8:
        raise DigitsError(f"{path} is not a model file: only {len(data)} bytes (truncated?)")
    _sniff(path, data)
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > _MAX_HEADER:
        raise DigitsError(f"{path} is not a safetensors model file (invalid header length)")
    if 8 + header_len > len(data):
        raise DigitsError(
            f"{path} is truncated: its header needs {header_len} bytes but the file ends "
            f"after {len(data) - 8}"
        )
    try:
        header = json.loads(data[8 : 8 + header_len])
        if not isinstance(header, dict):
            raise ValueError("not a JSON object")
        data_end = max(
            (int(info["data_offsets"][1]) for key, info in header.items() if key != "__metadata__"),
            default=0,
        )
    except (ValueError, TypeError, KeyError, IndexError, UnicodeDecodeError, RecursionError):
        raise DigitsError(f"{path} has a corrupt safetensors header (not the expected JSON)") from None
    if 8 + header_len + data_end > len(data):
        raise DigitsError(
            f"{path} is truncated: its tensors need {data_end} bytes of data but only "
            f"{len(data) - 8 - header_len} are there"
        )
    try:
        tensors = _st_load(data)
    except Exception as error:  # safetensors raises its own error type for any inconsistency
        raise DigitsError(f"{path} is not a valid safetensors file: {error}") from None

    raw = header.get("__metadata__") or {}
    if raw.get("format") != FORMAT:
        raise DigitsError(
            f"{path} has no digit-recognizer metadata (a safetensors file from another tool?)"
        )
    try:
        metadata = {k: json.loads(v) for k, v in raw.items() if k != "format"}
    except (TypeError, ValueError):
        raise DigitsError(f"{path} has corrupt metadata (values must be JSON)") from None
    except RecursionError:
        raise DigitsError(f"{path} has invalid metadata: nested deeper than JSON can be read") from None
    validate_metadata(path, metadata)
    return tensors, metadata


# --------------------------------------------------------------------------- metadata schema

MAX_DEPTH = 32  # nesting of any metadata value; the deepest written here (training settings) is 3


def _number(low: float, high: float, *, low_open: bool = False):
    """A finite JSON number (not a boolean) in [low, high] (or (low, high] with low_open)."""
    def check(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "must be a number"
        if not np.isfinite(value):
            return "must be finite"
        if value < low or (low_open and value == low) or value > high:
            return f"must be in {'(' if low_open else '['}{low:g}, {high:g}]"
    return check


def _text(value):
    if not isinstance(value, str):
        return "must be a string"


def _text_or_null(value):
    if value is not None and not isinstance(value, str):
        return "must be a string or null"


def _object(value):
    if not isinstance(value, dict):
        return "must be an object"


def _classes(value):
    if not isinstance(value, list) or not 2 <= len(value) <= 1000:
        return "must be a list of 2 to 1000 class names"
    if not all(isinstance(name, str) and name for name in value):
        return "must hold non-empty strings"
    if len(set(value)) != len(value):
        return "must not repeat a name"


def _spec(value):
    if not isinstance(value, list) or not 1 <= len(value) <= 1000:
        return "must be a list of 1 to 1000 layers"
    for index, layer in enumerate(value):
        if not isinstance(layer, dict) or not isinstance(layer.get("type"), str):
            return f"layer {index} must be an object with a string 'type'"
        for key, setting in layer.items():
            if isinstance(setting, (int, float)) and not isinstance(setting, bool) \
                    and not (np.isfinite(setting) and abs(setting) <= 2**20):
                return f"layer {index}: {key} = {setting!r} is out of range"


def _input_shape(value):
    if value != [1, 28, 28]:
        return "must be [1, 28, 28]"


def _epoch(value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return "must be a whole number >= 0"


# Every metadata key this package writes, with its check; keys not listed (written by a newer
# version) are accepted when they are JSON within the depth limit.
METADATA_SCHEMA = {
    "spec": _spec,
    "mean": _number(-1e3, 1e3),
    "std": _number(0, 1e3, low_open=True),
    "classes": _classes,
    "temperature": _number(0, 1e6, low_open=True),
    "refusal_threshold": _number(0.5, 1.0),
    "dataset": _text_or_null,
    "name": _text_or_null,
    "version": _text_or_null,
    "command": _text_or_null,
    "input_shape": _input_shape,
    "epoch": _epoch,
    "metrics": _object,
    "training": _object,
    "calibration": _object,
    "checkpoint": _object,
}


def _depth(value) -> int:
    """How deeply lists and objects nest in ``value`` (iteratively: no recursion limit to hit)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, depth + 1)
            if deepest > MAX_DEPTH:
                return deepest
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def validate_metadata(path, metadata: dict) -> None:
    """Check model metadata against ``METADATA_SCHEMA``: the required keys are there, every
    known key has the right type and range (numbers finite), nothing nests deeper than
    ``MAX_DEPTH``. Raises one ``DigitsError`` naming the file and the first bad key."""
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise DigitsError(f"{path} lacks model metadata: {', '.join(missing)}")
    for key, value in metadata.items():
        if _depth(value) > MAX_DEPTH:
            raise DigitsError(f"{path} has invalid metadata: {key} nests deeper than {MAX_DEPTH} levels")
        check = METADATA_SCHEMA.get(key)
        problem = check(value) if check else None
        if problem:
            shown = json.dumps(value)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise DigitsError(f"{path} has invalid metadata: {key} {problem} (got {shown})")


# --------------------------------------------------------------------------- models

class Model:
    """A trained network plus what it needs to be used: normalisation and class names.

    ``predict_proba`` takes float32 images in [0, 1] (uint8 in [0, 255] is also
    accepted), white digit on black, shaped (N, 28, 28), (N, 1, 28, 28) or one
    (28, 28) image, and returns (N, n_classes) probabilities. The model applies
    its own normalisation x' = (x - mean) / std, and its calibration temperature:
    p = softmax(z / T) (T from the metadata, fitted on the validation split; 1 if absent).
    """

    def __init__(self, net: nn.Sequential, metadata: dict):
        self.net = net
        self.metadata = metadata

    @property
    def classes(self) -> list[str]:
        return list(self.metadata["classes"])

    @property
    def temperature(self) -> float:
        return float(self.metadata.get("temperature", 1.0))

    @property
    def refusal_threshold(self) -> float:
        """A model with a "not a digit" class answers it when its probability reaches this
        (fitted on the validation split: ``calibration.fit_refusal_threshold``; 1/2 if absent)."""
        return float(self.metadata.get("refusal_threshold", 0.5))

    @property
    def not_a_digit_index(self) -> int | None:
        """The index of the "not a digit" class (always the last class), or None."""
        classes = self.classes
        return len(classes) - 1 if classes and classes[-1] == NOT_A_DIGIT else None

    @property
    def mean(self) -> float:
        return float(self.metadata["mean"])

    @property
    def std(self) -> float:
        return float(self.metadata["std"])

    def __repr__(self) -> str:
        name = self.metadata.get("name", "model")
        return f"Model({name!r}, dataset={self.metadata.get('dataset')!r}, classes={len(self.classes)})"

    def _as_batch(self, images) -> np.ndarray:
        x = np.asarray(images)
        scale = 255.0 if x.dtype == np.uint8 else 1.0
        x = x.astype(np.float32) / np.float32(scale)
        if x.ndim == 2:
            x = x[None]
        if x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4 or x.shape[1:] != (1, 28, 28):
            raise DigitsError(
                f"expected images of shape (N, 28, 28) or (N, 1, 28, 28), got {np.shape(images)}"
            )
        return x

    def logits(self, images, batch_size: int = 1000) -> np.ndarray:
        """Raw class scores (N, n_classes), computed in batches (bounded memory)."""
        x = self._as_batch(images)
        mean, std = np.float32(self.mean), np.float32(self.std)
        out = [
            self.net.forward((x[i : i + batch_size] - mean) / std, training=False)
            for i in range(0, len(x), batch_size)
        ]
        if not out:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)

    def predict_proba(self, images, batch_size: int = 1000) -> np.ndarray:
        """Calibrated class probabilities (N, n_classes): softmax(logits / temperature)."""
        logits = self.logits(images, batch_size) / np.float32(self.temperature)
        return nn.softmax(logits).astype(np.float32, copy=False)

    def predict(self, images, batch_size: int = 1000) -> np.ndarray:
        """Class indices (N,): the most probable class, or "not a digit" where its probability
        reaches ``refusal_threshold``."""
        return calibration.answers(self.predict_proba(images, batch_size), self.not_a_digit_index,
                                   self.refusal_threshold)

    def save(self, path: str | Path) -> Path:
        return save(path, self.net, self.metadata)


def save(path: str | Path, net: nn.Sequential, metadata: dict,
         extra_tensors: dict[str, np.ndarray] | None = None) -> Path:
    """Write a model file: the net's state_dict plus metadata (must hold spec, mean, std, classes)."""
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise ValueError(f"model metadata lacks {', '.join(missing)}")
    tensors = {k: np.asarray(v, dtype=np.float32) for k, v in net.state_dict().items()}
    for key, value in (extra_tensors or {}).items():
        tensors[CHECKPOINT_PREFIX + key] = value
    return write(path, tensors, metadata)


def from_tensors(path, tensors: dict[str, np.ndarray], metadata: dict) -> Model:
    """Build the architecture named in metadata and load tensors into it, checking every shape."""
    validate_metadata(path, metadata)  # again: metadata may come from elsewhere than read()
    try:
        net = models.build(metadata["spec"], n_classes=len(metadata["classes"]))
    except DigitsError as error:
        raise DigitsError(f"{path} describes an invalid architecture: {error}") from None
    except (TypeError, ValueError, KeyError, MemoryError) as error:
        raise DigitsError(f"{path} describes an invalid architecture ({type(error).__name__})") from None
    expected = net.state_dict()
    weights = {k: v for k, v in tensors.items() if not k.startswith(CHECKPOINT_PREFIX)}
    for key, value in expected.items():
        if key not in weights:
            raise DigitsError(f"{path} lacks tensor {key!r} that its architecture needs")
        if tuple(weights[key].shape) != tuple(np.shape(value)):
            raise DigitsError(
                f"{path}: tensor {key!r} has shape {tuple(weights[key].shape)} but the "
                f"architecture needs {tuple(np.shape(value))}"
            )
        if weights[key].dtype.kind != "f":
            raise DigitsError(f"{path}: tensor {key!r} has dtype {weights[key].dtype}, not float")
        if not np.isfinite(weights[key]).all():
            raise DigitsError(f"{path}: tensor {key!r} holds NaN or infinite values")
    extra = sorted(set(weights) - set(expected))
    if extra:
        raise DigitsError(f"{path} has tensor {extra[0]!r} that its architecture does not use")
    net.load_state_dict({k: weights[k].astype(np.float32, copy=False) for k in expected})
    return Model(net, metadata)


def load(path: str | Path | None = None) -> Model:
    """Load a model file (default: the shipped pretrained model)."""
    if path is None:
        path = default_model_path()
        if not path.exists():
            raise DigitsError(
                f"the pretrained model is missing from this installation ({path}); "
                "pass a model file trained with `digits train`"
            )
    tensors, metadata = read(path)
    return from_tensors(path, tensors, metadata)
