"""Any image or page -> 28x28 MNIST-style digits: the one preprocessing path of the project.

The CLI, the web app, the notebooks and the export tests all call this package,
so a digit looks the same to the network wherever it comes from. Its modules
follow the path an image takes:

- ``load``          decode anything Pillow reads (first frame, EXIF orientation,
                    a pixel budget against decompression bombs); transparency,
                    16-bit, palette and CMYK -> 8-bit gray.
- ``page``          a sheet on a table, polarity, uneven light, the threshold.
- ``segmentation``  connected components grouped into digits; touching digits
                    offered cut, the model picks the reading.
- ``normalize``     each digit's crop -> 28x28 the way MNIST was made.
- ``pipeline``      ``extract``: all of the above, as an ``Extraction``.
- ``steps``         the intermediate pictures (``--show-steps``).

Digits are (28, 28) float32 in [0, 1], white ink on black, as the model was trained on.
"""

from digit_recognizer.preprocess.load import IMAGE_SUFFIXES, MAX_FILE_BYTES, MAX_PIXELS, load_image
from digit_recognizer.preprocess.normalize import deskew_digit
from digit_recognizer.preprocess.page import otsu_threshold
from digit_recognizer.preprocess.pipeline import NO_DIGIT, Extraction, extract, segment, to_mnist
from digit_recognizer.preprocess.steps import save_steps, step_images

__all__ = [
    "IMAGE_SUFFIXES", "MAX_FILE_BYTES", "MAX_PIXELS", "NO_DIGIT", "Extraction", "deskew_digit", "extract",
    "load_image", "otsu_threshold", "save_steps", "segment", "step_images", "to_mnist",
]
