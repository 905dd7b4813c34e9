"""The whole path from an image to the digits the network reads: ``extract``."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from digit_recognizer.errors import DigitsError
from digit_recognizer.preprocess.load import DECODE_SIDE, load_image, to_gray
from digit_recognizer.preprocess.normalize import digit_crop, to_28x28
from digit_recognizer.preprocess.page import DETAIL_WORK_SIDE, WORK_SIDE, ink_map, max_pool, paper_only, polarity
from digit_recognizer.preprocess.rules import looks_ruled, remove_rules
from digit_recognizer.preprocess.segmentation import find_digits, splits

SPLIT_PRIOR = 0.95            # prior odds per digit more or fewer than the width suggests
SPLIT_SURE = 0.995            # a cut is taken only if the network is this sure of every part ...
SPLIT_EXPECTED = 0.97         # ... or this sure, when the group's width suggests that many digits
DIGIT_ASPECT = 0.75           # alone, a group w wide, h high looks like floor(w / (0.75 h)) digits
NO_DIGIT = "no digit found"
SMALL_DIGIT = 24              # digits shorter than this (px at WORK_SIDE) are read at DETAIL_WORK_SIDE


@dataclass
class Extraction:
    """Everything the pipeline saw, for ``predict``, ``--show-steps`` and the notebooks.

    gray: (H, W) work-resolution luminance, 1 = white (each pixel the darkest
    or brightest, whichever is ink, of its block of the full image). ink: (H, W) ink strength
    as uint8 (polarity fixed, background removed, 255 = full contrast). mask: ink above the
    Otsu threshold. pool: (m, 28, 28) float32, every candidate digit, with its
    (top, left, bottom, right) work-resolution box in pool_boxes. options: per
    group of ink (left to right), its possible readings as lists of pool
    indices: the group as one digit, then cut into 2, 3, ... touching digits.
    guess: per group, the option its width suggests. choice: the option taken
    per group; the guess until a model picks better (``choose``).
    """

    gray: np.ndarray
    ink: np.ndarray
    mask: np.ndarray
    inverted: bool
    pool: np.ndarray
    pool_boxes: list
    options: list
    guess: list
    choice: list
    line_of: list = field(default_factory=list)
    background: np.ndarray | None = None
    rules: np.ndarray | None = None

    @property
    def indices(self) -> list[int]:
        """Pool indices of the digits read: lines top to bottom, each left to right."""
        return [i for options, c in zip(self.options, self.choice) for i in options[c]]

    @property
    def line_lengths(self) -> list[int]:
        """How many of the digits read (``indices``) each line holds, top to bottom."""
        line_of = self.line_of or [0] * len(self.options)
        lengths = [0] * (max(line_of) + 1)
        for line, options, c in zip(line_of, self.options, self.choice):
            lengths[line] += len(options[c])
        return lengths

    @property
    def digits(self) -> np.ndarray:
        """(n, 28, 28) float32: the network inputs, left to right."""
        return self.pool[self.indices]

    @property
    def boxes(self) -> list:
        return [self.pool_boxes[i] for i in self.indices]

    def choose(self, probs: np.ndarray) -> None:
        """Per group, take the reading the model believes most: the highest product of
        the digits' top probabilities, times SPLIT_PRIOR per digit more or fewer
        than the group's width suggests (networks are confident even about half
        a digit, or about three digits squeezed into one, so geometry has a say);
        a cut counts only when every part is read with at least SPLIT_SURE (SPLIT_EXPECTED
        when the width suggests that many digits: touching digits cut apart keep a little
        of their neighbours, and are read a little less surely).
        ``probs``: (m, n_classes), the model's output for ``pool``."""
        top = np.asarray(probs).max(axis=1)
        log_top = np.log(np.maximum(top, 1e-12))

        def score(k, option, guess):
            if len(option) == 0:
                return -np.inf  # a cut that left no piece to read
            if k > 0 and top[option].min() < (SPLIT_EXPECTED if k == guess else SPLIT_SURE):
                return -np.inf  # a digit cut cleanly out of a pair is recognised surely
            return log_top[option].sum() + abs(k - guess) * np.log(SPLIT_PRIOR)

        self.choice = [
            int(np.argmax([score(k, o, guess) for k, o in enumerate(options)]))
            for options, guess in zip(self.options, self.guess)
        ]


def extract(source, *, single: bool = False, deskew: bool = False) -> Extraction:
    """Run the whole pipeline on ``source``; ``single`` treats all the ink as one digit.

    Raises ``DigitsError("no digit found")`` when the image has no ink.
    """
    image = load_image(source)
    gray_full = paper_only(to_gray(image, DECODE_SIDE))
    inverted, even = polarity(gray_full)
    x_full = 255 - gray_full if inverted else gray_full  # uint8, bright ink
    # At WORK_SIDE first; a page that looks ruled, or whose digits are small (or not found) there, is
    # read again at DETAIL_WORK_SIDE (most photos are not, and pay for the smaller size only).
    for side in (WORK_SIDE, DETAIL_WORK_SIDE):
        x = max_pool(x_full, side)
        ink, mask, background = ink_map(x, inverted, even)
        if side == WORK_SIDE and x.shape != x_full.shape and looks_ruled(mask):
            continue
        ink, mask, rules = remove_rules(ink, mask)
        labels, lines = find_digits(ink, mask, single)
        tallest = max((b - t for line in lines for (t, _, b, _), _ in line), default=0)
        if side == DETAIL_WORK_SIDE or x.shape == x_full.shape or tallest >= SMALL_DIGIT:
            break
    groups = [g for line in lines for g in line]
    line_of = [k for k, line in enumerate(lines) for _ in line]
    if not groups:
        raise DigitsError(NO_DIGIT)

    # The width one digit takes here: in a number, the widest of its plainly single digits;
    # alone, MNIST's typical aspect ratio. Groups much wider may be touching digits.
    sizes = np.array([(b - t, r - l) for (t, l, b, r), _ in groups], dtype=float)
    plain = (sizes[:, 1] >= 0.5 * sizes[:, 0]) & (sizes[:, 1] <= 1.1 * sizes[:, 0])
    unit = sizes[plain, 1].max() if len(groups) > 1 and plain.sum() >= 2 else None
    pool, pool_boxes, options, guesses = [], [], [], []
    for box, members in groups:
        t, l, b, r = box
        h, w = b - t, r - l
        width = unit or DIGIT_ASPECT * h
        readings = [[box]]
        # wide enough to be touching digits? (alone: wider than tall, which 95 % of MNIST digits are not)
        if not single and w > (0.9 * unit if unit else h):
            readings += [splits(ink, labels, box, members, n) for n in range(2, min(5, int(w / (0.35 * h))) + 1)]
        group_options = []
        for reading in readings:
            group_options.append(list(range(len(pool), len(pool) + len(reading))))
            pool_boxes += reading
            pool += [to_28x28(digit_crop(ink, labels, p, members, x_full), deskew=deskew) for p in reading]
        options.append(group_options)
        guess = int(round(w / width)) if unit else int(w / width)
        guesses.append(min(max(1, guess), len(readings)) - 1)
    gray = (255 - x if inverted else x).astype(np.float32) * np.float32(1 / 255)  # as seen at work resolution
    pool = np.stack(pool).astype(np.float32)
    return Extraction(gray, ink, mask, inverted, pool, pool_boxes, options, guesses, list(guesses), line_of,
                      background, rules)


def to_mnist(image, *, deskew: bool = False) -> np.ndarray:
    """Any image -> (28, 28) float32 in [0, 1], white digit on black, MNIST-style.

    All the ink is taken as one digit. ``DigitsError("no digit found")`` for a blank image.
    """
    return extract(image, single=True, deskew=deskew).digits[0]


def segment(image, *, deskew: bool = False) -> list[np.ndarray]:
    """The digits of a number, left to right: a list of (28, 28) float32 arrays."""
    return list(extract(image, deskew=deskew).digits)
