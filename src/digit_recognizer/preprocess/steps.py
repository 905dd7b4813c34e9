"""What the network saw, step by step, as pictures (``digits predict --show-steps``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from digit_recognizer.errors import DigitsError
from digit_recognizer.preprocess.pipeline import Extraction


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
    """The pipeline's steps as pictures, in order: gray, ink, mask with the digit boxes,
    and each 28x28 network input (x8). ``digits predict --show-steps`` writes them; the
    web page's "inside the network" view shows them."""

    def png(array):
        return Image.fromarray((np.clip(array, 0, 1) * 255).round().astype(np.uint8))

    mask = png(ex.mask.astype(np.float32)).convert("RGB")
    draw = ImageDraw.Draw(mask)
    for t, l, b, r in ex.boxes:
        draw.rectangle((l, t, r - 1, b - 1), outline=(255, 64, 64))
    steps = [("1-gray", png(ex.gray)), ("2-ink", png(ex.ink / 255.0)), ("3-mask", mask)]
    for i, digit in enumerate(ex.digits):
        steps.append((f"4-digit{i}", png(digit).resize((224, 224), Image.Resampling.NEAREST)))
    return steps
