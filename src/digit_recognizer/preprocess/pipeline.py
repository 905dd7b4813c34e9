"""The whole path from an image to the digits the network reads: ``extract``."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from digit_recognizer.errors import DigitsError
from digit_recognizer.preprocess.load import DECODE_SIDE, load_image, to_gray
from digit_recognizer.preprocess.normalize import digit_crop, to_28x28
from digit_recognizer.preprocess.page import (
    DETAIL_WORK_SIDE, INK_SHARE, WORK_SIDE, ink_map, max_pool, paper_only, polarity,
)
from digit_recognizer.preprocess.rules import looks_ruled, remove_rules
from digit_recognizer.preprocess.segmentation import cut_lattice, find_digits

SPLIT_PRIOR = 0.95            # prior odds per digit more or fewer than the width suggests
SPLIT_SURE = 0.995            # a cut is taken only if the network is this sure of every part ...
SPLIT_EXPECTED = 0.97         # ... or this sure, when the group's width suggests that many digits (+-1)
DIGIT_ASPECT = 0.75           # alone, a group w wide, h high looks like floor(w / (0.75 h)) digits
NO_DIGIT = "no digit found"
SMALL_DIGIT = 24              # digits shorter than this (px at WORK_SIDE) are read at DETAIL_WORK_SIDE
# A sheet lying turned on a table by this many degrees or more is turned upright before it is
# read (the writing on it is turned as much; MNIST's digits themselves lean by up to about this).
SHEET_TURN = 5.0
MAX_TOUCHING = 5              # a group of touching digits is read as at most this many ...
TOUCHING_ASPECT = 0.35        # ... and at most one per this fraction of its height in width


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
    per group; the guess until a model picks better (``choose``). lattices: per group,
    None or (last cut, {(cut i, cut j): pool index}): the group cut along its valleys
    (``segmentation.cut_lattice``); each option cuts it at the cuts that share its width
    most evenly, until ``choose`` finds the cuts the model reads best.
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
    lattices: list = field(default_factory=list)

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

    def keep(self, kept) -> None:
        """Read only the digits (of ``indices``) where ``kept`` is true: each group keeps
        its remaining pieces as its reading; a group with none left, or a line, disappears."""
        kept = iter(np.asarray(kept, dtype=bool))
        groups = []
        for g, (options, c) in enumerate(zip(self.options, self.choice)):
            reading = [i for i in options[c] if next(kept)]
            if reading:
                groups.append((g, reading))
        line_of = self.line_of or [0] * len(self.options)
        lines = sorted({line_of[g] for g, _ in groups})
        self.line_of = [lines.index(line_of[g]) for g, _ in groups]
        self.options = [[reading] for _, reading in groups]
        self.choice, self.guess = [0] * len(groups), [0] * len(groups)
        self.lattices = [None] * len(groups)

    def choose(self, probs: np.ndarray) -> None:
        """Per group, take the reading the model believes most: the highest product of
        the digits' top probabilities, times SPLIT_PRIOR per digit more or fewer
        than the group's width suggests (networks are confident even about half
        a digit, or about three digits squeezed into one, so geometry has a say).
        A cut counts only when every part is read with at least SPLIT_SURE, or
        SPLIT_EXPECTED when the group's width suggests that many digits give or take
        one (touching digits cut apart keep a little of their neighbours and are read a
        little less surely; a "1" is narrow, a "0" wide, so the width is a rough count);
        and a group read surely as one digit (SPLIT_SURE) is cut only when its parts are
        read at least as surely together. A group cut along its valleys is first read,
        for each number of digits, at the cuts whose parts the model reads best (the
        highest product of top probabilities, every part sure enough).
        ``probs``: (m, n_classes), the model's output for ``pool``."""
        top = np.asarray(probs).max(axis=1)
        log_top = np.log(np.maximum(top, 1e-12))

        def sure(k, guess):  # how sure every part of a reading in k + 1 digits must be
            return SPLIT_EXPECTED if abs(k - guess) <= 1 else SPLIT_SURE

        for options, guess, lattice in zip(self.options, self.guess, self.lattices):
            if lattice is None:
                continue
            last, segments = lattice
            for k in range(1, len(options)):
                floor = sure(k, guess)
                path = best_path(segments, last, k + 1, lambda i: log_top[i] if top[i] >= floor else -np.inf)
                if path is not None:
                    options[k] = path

        def score(k, option, guess, whole):
            if len(option) == 0:
                return -np.inf  # a cut that left no piece to read
            if k > 0 and top[option].min() < sure(k, guess):
                return -np.inf  # a digit cut cleanly out of a pair is recognised surely
            if k > 0 and top[whole] >= SPLIT_SURE and log_top[option].sum() < log_top[whole]:
                return -np.inf  # geometry alone does not cut a digit read surely whole
            return log_top[option].sum() + abs(k - guess) * np.log(SPLIT_PRIOR)

        self.choice = [
            int(np.argmax([score(k, o, guess, options[0][0]) for k, o in enumerate(options)]))
            for options, guess in zip(self.options, self.guess)
        ]


def best_path(segments: dict, last: int, n: int, score) -> list | None:
    """The pool indices of the ``n`` segments from cut 0 to cut ``last`` with the highest
    total ``score(pool index)`` (a dynamic programme over the cuts), or None when no
    ``n`` segments with finite scores span the group. ``segments``: {(i, j): pool index}."""
    best = {0: (0.0, [])}  # cut -> (score, pool indices) of the best way to reach it
    for _ in range(n):
        reach = {}
        for (i, j), index in segments.items():
            if i in best:
                total = best[i][0] + score(index)
                if total > -np.inf and (j not in reach or total > reach[j][0]):
                    reach[j] = (total, best[i][1] + [index])
        best = reach
    return best[last][1] if last in best else None


def extract(source, *, single: bool = False, deskew: bool = False) -> Extraction:
    """Run the whole pipeline on ``source``; ``single`` treats all the ink as one digit.

    Raises ``DigitsError("no digit found")`` when the image has no ink.
    """
    image = load_image(source)
    gray_full, turn = paper_only(to_gray(image, DECODE_SIDE))
    if abs(turn) >= SHEET_TURN:
        gray_full = upright(gray_full, turn)
    inverted, even = polarity(gray_full)
    x_full = 255 - gray_full if inverted else gray_full  # uint8, bright ink
    # At WORK_SIDE first; a page that looks ruled, or whose digits are small (or not found) there, is
    # read again at DETAIL_WORK_SIDE (most photos are not, and pay for the smaller size only).
    first = None  # the first look's threshold, when it found digits (on a page not ruled)
    for side in (WORK_SIDE, DETAIL_WORK_SIDE):
        x = max_pool(x_full, side)
        ink, mask, background, threshold = ink_map(x, inverted, even)
        if first is not None and np.count_nonzero(mask) > INK_SHARE * mask.size:
            # More than ink ever covers, where the first look found digits: the noise of lit
            # paper beside a deep shadow, whose edges took the threshold down. The first holds.
            ink, mask, background, threshold = ink_map(x, inverted, even, floor=first)
        if side == WORK_SIDE and x.shape != x_full.shape and looks_ruled(mask):
            continue
        ink, mask, rules = remove_rules(ink, mask)
        labels, lines = find_digits(ink, mask, single)
        tallest = max((b - t for line in lines for (t, _, b, _), _ in line), default=0)
        if side == DETAIL_WORK_SIDE or x.shape == x_full.shape or tallest >= SMALL_DIGIT:
            break
        first = threshold if lines else None
    groups = [g for line in lines for g in line]
    line_of = [k for k, line in enumerate(lines) for _ in line]
    if not groups:
        raise DigitsError(NO_DIGIT)

    # The width one digit takes here: in a number, the widest of its plainly single digits;
    # alone, MNIST's typical aspect ratio. Groups much wider may be touching digits.
    sizes = np.array([(b - t, r - l) for (t, l, b, r), _ in groups], dtype=float)
    plain = (sizes[:, 1] >= 0.5 * sizes[:, 0]) & (sizes[:, 1] <= 1.1 * sizes[:, 0])
    unit = sizes[plain, 1].max() if len(groups) > 1 and plain.sum() >= 2 else None
    pool, pool_boxes, options, guesses, lattices = [], [], [], [], []

    def add(box, group_labels, members):
        pool_boxes.append(box)
        pool.append(to_28x28(digit_crop(ink, group_labels, box, members, x_full), deskew=deskew))
        return len(pool) - 1

    for box, members in groups:
        t, l, b, r = box
        h, w = b - t, r - l
        width = unit or DIGIT_ASPECT * h
        group_options = [[add(box, labels, members)]]
        lattice = None
        # wide enough to be touching digits? (alone: wider than tall, which 95 % of MNIST digits are not)
        if not single and w > (0.9 * unit if unit else h):
            strip_labels, cuts = cut_lattice(ink, labels, box, members)
            last = max(j for _, j in cuts)
            segments = {(i, j): group_options[0][0] if (i, j) == (0, last) else add(part, strip_labels, strips)
                        for (i, j), (part, strips) in cuts.items()}
            lattice = (last, segments)

            def uneven(index, n):  # before the model has its say: cuts that share the width evenly
                return -((pool_boxes[index][3] - pool_boxes[index][1]) - w / n) ** 2

            for n in range(2, min(MAX_TOUCHING, int(w / (TOUCHING_ASPECT * h))) + 1):
                path = best_path(segments, last, n, lambda i: uneven(i, n))
                group_options.append(path or [])  # (no piece to read: no such reading)
        options.append(group_options)
        lattices.append(lattice)
        guess = int(round(w / width)) if unit else int(w / width)
        guesses.append(min(max(1, guess), len(group_options)) - 1)
    gray = (255 - x if inverted else x).astype(np.float32) * np.float32(1 / 255)  # as seen at work resolution
    pool = np.stack(pool).astype(np.float32)
    # until a model picks: the reading nearest the guess that has pieces to read
    choice = [min((k for k, o in enumerate(group) if o), key=lambda k: abs(k - guess))
              for group, guess in zip(options, guesses)]
    return Extraction(gray, ink, mask, inverted, pool, pool_boxes, options, guesses, choice, line_of,
                      background, rules, lattices)


def upright(gray: np.ndarray, turn: float) -> np.ndarray:
    """``gray`` (uint8) turned back by ``turn`` degrees (counter-clockwise: ``paper_only`` gives
    a sheet's clockwise turn) about its centre, on the same canvas; what comes in from beyond
    the edges repeats them (the paper painted around a sheet)."""
    h, w = gray.shape
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), turn, 1.0)
    return cv2.warpAffine(gray, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def to_mnist(image, *, deskew: bool = False) -> np.ndarray:
    """Any image -> (28, 28) float32 in [0, 1], white digit on black, MNIST-style.

    All the ink is taken as one digit. ``DigitsError("no digit found")`` for a blank image.
    """
    return extract(image, single=True, deskew=deskew).digits[0]


def segment(image, *, deskew: bool = False) -> list[np.ndarray]:
    """The digits of a number, left to right: a list of (28, 28) float32 arrays."""
    return list(extract(image, deskew=deskew).digits)
