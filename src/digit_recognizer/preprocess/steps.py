"""What the network saw, step by step, as pictures (``digits predict --show-steps``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from digit_recognizer.errors import DigitsError
from digit_recognizer.preprocess.pipeline import Extraction

LINE_COLOURS = ((64, 200, 64), (255, 180, 0), (0, 180, 255), (255, 64, 255))


def save_steps(ex: Extraction, directory: str | Path, stem: str = "image") -> list[Path]:
    """Write what the network saw (:func:`step_images`) as ``STEM-NAME.png`` files."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for name, image in step_images(ex):
            path = directory / f"{stem}-{name}.png"
            image.save(path)
            written.append(path)
        return written
    except OSError as error:
        raise DigitsError(f"cannot write the steps to {directory}: {error.strerror or error}") from None


def step_images(ex: Extraction) -> list[tuple[str, Image.Image]]:
    """The pipeline's steps as pictures, in order: gray; the paper's own level it found
    (background); ink; the rules found (in blue over the gray); the mask with the digit
    boxes; the text lines found (one box per line); each 28x28 network input (x8).
    ``digits predict --show-steps`` writes them; the web page's "inside the network"
    view shows them."""

    def png(array):
        return Image.fromarray((np.clip(array, 0, 1) * 255).round().astype(np.uint8))

    mask = png(ex.mask.astype(np.float32)).convert("RGB")
    lines = mask.copy()
    draw = ImageDraw.Draw(mask)
    for t, l, b, r in ex.boxes:
        draw.rectangle((l, t, r - 1, b - 1), outline=(255, 64, 64))
    draw = ImageDraw.Draw(lines)
    boxes = np.array(ex.boxes).reshape(-1, 4)
    start = 0
    for k, n in enumerate(ex.line_lengths):
        t, l = boxes[start : start + n, :2].min(axis=0)
        b, r = boxes[start : start + n, 2:].max(axis=0)
        draw.rectangle((int(l) - 2, int(t) - 2, int(r) + 1, int(b) + 1), outline=LINE_COLOURS[k % len(LINE_COLOURS)])
        start += n
    gray = np.asarray(png(ex.gray))
    rules = np.stack([gray] * 3, axis=-1)
    if ex.rules is not None:
        rules[ex.rules] = (40, 90, 255)
    background = np.zeros_like(ex.ink) if ex.background is None else ex.background
    steps = [("1-gray", png(ex.gray)), ("1b-background", png(background / 255.0)),
             ("2-ink", png(ex.ink / 255.0)), ("2b-rules", Image.fromarray(rules)),
             ("3-mask", mask), ("3b-lines", lines)]
    for i, digit in enumerate(ex.digits):
        steps.append((f"4-digit{i}", png(digit).resize((224, 224), Image.Resampling.NEAREST)))
    return steps
