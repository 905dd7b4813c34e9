"""Recognise the digits in people's images: preprocessing + a model -> JSON-ready results.

``model`` is anything with ``predict_proba(images) -> (N, n_classes)`` for
float32 images (N, 28, 28) in [0, 1], white on black (a ``modelfile.Model``).
The CLI, the web app and the notebooks all call these two functions.

A result is a dict (the contract of ``digits predict --json``)::

    {"digit": 7, "confidence": 0.998, "top_k": [[7, 0.998], [1, 0.001], [2, 0.0004]],
     "low_confidence": false}

An image holding several digits also carries ``"number": "2026"`` and
``"digits"``, one such dict per digit, left to right; its ``digit`` and
``top_k`` are those of the leftmost digit and its ``confidence`` is the
probability that the whole number is right (the product over its digits).
Digits on several lines carry ``"lines": ["2026", "12"]`` (top to bottom)
instead of ``"number"``, and ``"digits"`` line after line.

A model with a "not a digit" class (the shipped one) answers
``{"error": "not a digit", "not_a_digit": 0.97}`` when that class's probability
reaches the model's ``refusal_threshold`` for every mark read (marks refused beside
digits, such as a smudge or a stray letter, are left out of the reading); otherwise
its digits' probabilities are those of the digit classes (calibrated, so they leave
room for "not a digit").
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from digit_recognizer import preprocess
from digit_recognizer.errors import DigitsError

LOW_CONFIDENCE = 0.75  # below this a reading is flagged "low_confidence"
NOT_A_DIGIT = "not a digit"  # the error for an input the model classes as no digit


def failed(error: str | None) -> bool:
    """Whether a result's ``error`` means its input could not be read: "not a digit" is an
    answer, not a failure."""
    return error is not None and error != NOT_A_DIGIT


def not_a_digit_index(model) -> int | None:
    """The column of the model's "not a digit" class (always its last), or None."""
    return getattr(model, "not_a_digit_index", None)


def _digit_result(probs: np.ndarray, top_k: int) -> dict:
    order = np.argsort(-probs, kind="stable")[: max(1, top_k)]
    best = int(order[0])
    return {
        "digit": best,
        "confidence": round(float(probs[best]), 4),
        "top_k": [[int(k), round(float(probs[k]), 4)] for k in order],
    }


def _result(probs: np.ndarray, top_k: int, line_lengths=None, reject: int | None = None,
            threshold: float = 0.5) -> dict:
    """One image's result from the (n_digits, n_classes) probabilities of its digits
    (lines top to bottom, each left to right; ``line_lengths``: digits per line);
    ``reject``: the column of the "not a digit" class, if the model has one, answered where
    its probability reaches ``threshold``."""
    if reject is not None:
        refused = probs[:, reject] >= threshold
        if refused.any():
            return {"error": NOT_A_DIGIT, "not_a_digit": round(float(probs[refused, reject].max()), 4)}
        probs = probs[:, :reject]
    digits = [_digit_result(p, top_k) for p in probs]
    if len(digits) == 1:
        result = digits[0]
    else:
        confidence = float(np.prod(probs.max(axis=1)))
        text = "".join(str(d["digit"]) for d in digits)
        reading = {"number": text}
        if line_lengths is not None and len(line_lengths) > 1:
            ends = np.cumsum(line_lengths)
            reading = {"lines": [text[end - n : end] for n, end in zip(line_lengths, ends)]}
        result = {
            **reading,
            "digit": digits[0]["digit"],
            "confidence": round(confidence, 4),
            "top_k": digits[0]["top_k"],
            "digits": digits,
        }
    result["low_confidence"] = result["confidence"] < LOW_CONFIDENCE
    return result


def predict_image(model, source, top_k: int = 3, *, deskew: bool = False, steps_dir=None) -> dict:
    """Read the digit (or number) in ``source`` (path, bytes, PIL image or array).

    Raises ``DigitsError`` for an unreadable image or ``"no digit found"``; something the
    model classes as no digit gives ``{"error": "not a digit", ...}``.
    ``steps_dir``: also write the intermediate images there (``preprocess.save_steps``).
    """
    ex = preprocess.extract(source, deskew=deskew)
    result = read(model, ex, top_k)
    if steps_dir is not None:
        stem = Path(source).stem if isinstance(source, (str, os.PathLike)) else "image"
        preprocess.save_steps(ex, steps_dir, stem)
    return result


def read(model, ex: preprocess.Extraction, top_k: int = 3, probs=None) -> dict:
    """The result for an ``Extraction``: the model scores every candidate digit, picks
    each group's reading (``ex.choose``), leaves out marks refused as "not a digit" beside
    digits (``ex.keep``), and reports it. Afterwards ``ex.digits`` are the network inputs
    that were read. ``probs``: the model's output for ``ex.pool``, when already computed
    (batched over many images)."""
    probs = np.asarray(model.predict_proba(ex.pool) if probs is None else probs)
    reject = not_a_digit_index(model)
    # Readings are chosen by how surely their parts are digits, never by a sure "not a digit".
    ex.choose(probs if reject is None else probs[:, :reject])
    classes = getattr(model, "classes", None)
    threshold = getattr(model, "refusal_threshold", 0.5)
    if reject is not None:
        refused = probs[ex.indices, reject] >= threshold
        if refused.any() and not refused.all():
            ex.keep(~refused)
    return _with_class_names(_result(probs[ex.indices], top_k, ex.line_lengths, reject, threshold),
                             classes if reject is None else classes[:reject])


def _with_class_names(result: dict, classes) -> dict:
    """For a model whose classes are not digits (Fashion-MNIST): ``"class"`` names the
    reading and ``top_k`` pairs carry names, ``[["Sneaker", 0.97], ...]``; ``digit`` stays
    the class index."""
    if not classes or "error" in result or all(str(name).isdigit() for name in classes):
        return result
    for reading in [result, *result.get("digits", [])]:
        reading["class"] = str(classes[reading["digit"]])
        reading["top_k"] = [[str(classes[k]), p] for k, p in reading["top_k"]]
    return result


def expand_paths(paths) -> list[Path]:
    """Files named directly, plus the image files found (recursively) in named folders, sorted."""
    return _expand(paths)[0]


def _expand(paths) -> tuple[list[Path], list[dict]]:
    """``expand_paths``, plus an error result for each folder that could not be read."""
    out, unreadable = [], []

    def note(error: OSError):
        unreadable.append({"path": error.filename, "error": f"cannot read this folder: {error.strerror or error}"})

    for path in map(Path, paths):
        if path.is_dir():
            found = []
            for folder, _, names in os.walk(path, onerror=note):
                found += [Path(folder, name) for name in names
                          if Path(name).suffix.lower() in preprocess.IMAGE_SUFFIXES and Path(folder, name).is_file()]
            out += sorted(found)
        else:
            out.append(path)
    return out, unreadable


def predict_paths(model, paths, top_k: int = 3, *, deskew: bool = False, steps_dir=None,
                  batch_size: int = 256) -> list[dict]:
    """``predict_image`` for every file (folders are walked), the model run on the digits
    of ``batch_size`` files at a time (bounded memory for any number of files).

    Each result carries ``"path"``; an input that fails carries ``"error"``
    instead of a reading, and the others are still predicted.
    """
    files, unreadable = _expand(paths)
    stems = _unique_stems(files)
    results = []
    for first in range(0, len(files), batch_size):
        extracted = []
        for path in files[first : first + batch_size]:
            try:
                extracted.append((len(results), path, preprocess.extract(path, deskew=deskew)))
                results.append({"path": str(path)})
            except DigitsError as error:
                results.append({"path": str(path), "error": str(error)})
        if not extracted:
            continue
        probs = np.asarray(model.predict_proba(np.concatenate([ex.pool for _, _, ex in extracted])))
        start = 0
        for index, path, ex in extracted:
            results[index].update(read(model, ex, top_k, probs[start : start + len(ex.pool)]))
            start += len(ex.pool)
            if steps_dir is not None:
                preprocess.save_steps(ex, steps_dir, stems[index])
    return results + unreadable


def _unique_stems(files: list[Path]) -> list[str]:
    """File stems to name each file's steps by: a stem seen before gets -2, -3, ... added,
    so that a/7.png and b/7.png do not overwrite each other's steps."""
    taken, stems = set(), []
    for path in files:
        stem, n = path.stem, 1
        while stem in taken:
            n += 1
            stem = f"{path.stem}-{n}"
        taken.add(stem)
        stems.append(stem)
    return stems
