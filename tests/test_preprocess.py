"""The image pipeline: any image -> MNIST-style 28x28, and every hostile input refused cleanly.

Model-free: a property of the pipeline is checked by comparing the 28x28 it
makes from two versions of one picture (white-on-black vs black-on-white, a
16-bit vs an 8-bit PNG, an upright vs an EXIF-rotated JPEG, ...).
"""

import io
import struct
import zlib
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from scipy import ndimage

from digit_recognizer import preprocess
from digit_recognizer.errors import DigitsError

FONT = str(matplotlib.get_data_path()) + "/fonts/ttf/DejaVuSans.ttf"


def drawn(text="7", size=(200, 240), height=150, ink=0, paper=255, thickness=0) -> Image.Image:
    """``text`` in DejaVu Sans, centred, as an 8-bit gray image."""
    image = Image.new("L", size, paper)
    font = ImageFont.truetype(FONT, height)
    ImageDraw.Draw(image).text((size[0] / 2, size[1] / 2), text, fill=ink, font=font, anchor="mm",
                               stroke_width=thickness, stroke_fill=ink)
    return image


def png_bytes(image: Image.Image, **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **kw)
    return buffer.getvalue()


def similar(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of two 28x28 digits, blurred so a 1-px shift of a 2-px stroke still matches."""
    a, b = ndimage.gaussian_filter(a, 1.0), ndimage.gaussian_filter(b, 1.0)
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.fixture(scope="module")
def seven():
    return preprocess.to_mnist(drawn("7"))


# --------------------------------------------------------------------------- MNIST shape


def test_output_is_mnist_style(seven):
    assert seven.shape == (28, 28) and seven.dtype == np.float32
    assert 0.0 <= seven.min() and seven.max() <= 1.0 and seven.max() > 0.9
    rows, cols = np.flatnonzero(seven.max(1) > 0.05), np.flatnonzero(seven.max(0) > 0.05)
    assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 in (19, 20, 21)  # fits the 20x20 box
    yy, xx = np.mgrid[:28, :28]
    cy, cx = (seven * yy).sum() / seven.sum(), (seven * xx).sum() / seven.sum()
    assert abs(cy - 13.5) < 1 and abs(cx - 13.5) < 1  # centre of mass at the centre


def test_an_mnist_digit_comes_back_close_to_itself(mnist_test):
    images, _ = mnist_test
    scores = [similar(preprocess.to_mnist(x), x / 255.0) for x in images[:100]]
    assert np.median(scores) > 0.8


def test_polarity_white_on_black_equals_black_on_white(seven):
    white_on_black = preprocess.to_mnist(drawn("7", ink=255, paper=0))
    assert similar(white_on_black, seven) > 0.98


def test_coloured_ink_and_paper():
    image = Image.merge("RGB", [drawn("7", ink=c, paper=p) for c, p in ((30, 250), (40, 245), (170, 235))])
    assert similar(preprocess.to_mnist(image), preprocess.to_mnist(drawn("7"))) > 0.95


def test_uneven_light_is_evened_out(seven):
    x = np.asarray(drawn("7"), np.float32) / 255
    h, w = x.shape
    light = np.linspace(0.35, 1.0, w)[None, :] * np.linspace(0.8, 1.0, h)[:, None]  # dark left edge
    photo = Image.fromarray((x * light * 255).astype(np.uint8))
    assert similar(preprocess.to_mnist(photo), seven) > 0.9


@pytest.mark.parametrize("cover", [0.3, 0.6, 0.8])
def test_a_sheet_of_paper_on_a_dark_table(seven, cover):
    table = np.full((480, 640), 60, np.uint8)
    h, w = int(480 * np.sqrt(cover)), int(640 * np.sqrt(cover))
    sheet = drawn("7", size=(w, h), height=int(0.6 * h))
    photo = Image.fromarray(table)
    photo.paste(sheet, ((640 - w) // 2, (480 - h) // 2))
    assert similar(preprocess.to_mnist(photo.rotate(5, fillcolor=60)), seven) > 0.9


@pytest.mark.parametrize("turn", [-25, 25])
def test_a_turned_sheet_running_off_the_photo_on_a_grained_table(seven, turn):
    # a sheet turned by 25 degrees, partly beyond the photo's right and bottom edges, on a
    # wood table with grain: the table's edge and grain are no ink, the digit is read upright
    rows = np.arange(480)[:, None]
    table = (70 + 12 * np.sin(rows / 5.0)) * np.ones((1, 640))
    photo = Image.fromarray(table.astype(np.uint8))
    sheet = drawn("7", size=(400, 320), height=160, paper=235).rotate(turn, expand=True, fillcolor=0)
    mask = Image.new("L", (400, 320), 255).rotate(turn, expand=True, fillcolor=0)
    photo.paste(sheet, (190, 70), mask)
    assert similar(preprocess.to_mnist(photo), seven) > 0.9


def test_a_shadow_over_half_the_page_keeps_the_digit(seven):
    x = np.asarray(drawn("7", size=(400, 300), height=200), np.float32)
    x[:, :180] *= 0.55  # the shadow of the phone, through the digit
    assert similar(preprocess.to_mnist(Image.fromarray(x.astype(np.uint8))), seven) > 0.9


def test_paper_noise_is_not_ink(seven):
    rng = np.random.default_rng(0)
    noisy = np.asarray(drawn("7"), np.float32) + rng.normal(0, 12, (240, 200))
    out = preprocess.to_mnist(Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)))
    assert similar(out, seven) > 0.9


def test_thin_and_thick_strokes_are_normalised_towards_mnist(seven):
    thin = preprocess.to_mnist(drawn("7", size=(600, 700), height=500))  # 1/10 the stroke width
    thick = preprocess.to_mnist(drawn("7", thickness=14))
    for out in (thin, thick):
        width = preprocess.normalize.stroke_width(out > 0.5)
        assert 1.2 < width < 4.5  # MNIST strokes are about 2-3 px wide at 28x28
        assert similar(out, seven) > 0.8


def test_small_digit_off_centre_on_a_large_canvas(seven):
    canvas = Image.new("L", (1600, 1200), 255)
    canvas.paste(drawn("7", size=(30, 36), height=30), (1300, 90))
    assert similar(preprocess.to_mnist(canvas), seven) > 0.85


def test_deskew_straightens_a_slanted_digit():
    upright = preprocess.to_mnist(drawn("1"))
    slanted = drawn("1").transform((200, 240), Image.Transform.AFFINE, (1, 0.4, -48, 0, 1, 0), fillcolor=255)
    plain, straightened = preprocess.to_mnist(slanted), preprocess.to_mnist(slanted, deskew=True)

    def slant(d):
        yy, xx = np.mgrid[:28, :28]
        m = d / d.sum()
        cy, cx = (m * yy).sum(), (m * xx).sum()
        return abs((m * (yy - cy) * (xx - cx)).sum() / (m * (yy - cy) ** 2).sum())

    assert slant(plain) > 0.25 and slant(straightened) < 0.05
    assert similar(straightened, upright) > similar(plain, upright)


# --------------------------------------------------------------------------- transparency, formats


def test_canvas_drawing_in_the_alpha_channel_only():
    alpha = 255 - np.asarray(drawn("3"))
    rgba = np.dstack([np.zeros_like(alpha)] * 3 + [alpha])  # black strokes, transparent elsewhere
    from_alpha = preprocess.to_mnist(png_bytes(Image.fromarray(rgba, "RGBA")))
    assert similar(from_alpha, preprocess.to_mnist(drawn("3"))) > 0.98
    white = np.dstack([np.full_like(alpha, 255)] * 3 + [alpha])  # white strokes on transparent
    assert similar(preprocess.to_mnist(Image.fromarray(white, "RGBA")), from_alpha) > 0.98


def test_photo_with_transparent_corners_keeps_its_paper():
    rgba = np.asarray(drawn("5").convert("RGBA")).copy()
    rgba[:20, :20, 3] = 0  # rounded-corner screenshot: RGB black there, fully transparent
    rgba[:20, :20, :3] = 0
    assert similar(preprocess.to_mnist(Image.fromarray(rgba, "RGBA")), preprocess.to_mnist(drawn("5"))) > 0.98


def test_palette_image_with_transparency():
    image = drawn("2").convert("P")
    image.info["transparency"] = 255  # the paper colour's index is transparent
    assert similar(preprocess.to_mnist(png_bytes(image, transparency=255)), preprocess.to_mnist(drawn("2"))) > 0.98


def test_16_bit_png_reads_like_8_bit():
    eight = np.asarray(drawn("4"))
    sixteen = Image.fromarray(eight.astype(np.uint16) * 257)
    data = png_bytes(sixteen)
    assert preprocess.load_image(data).mode.startswith("I")
    assert similar(preprocess.to_mnist(data), preprocess.to_mnist(drawn("4"))) > 0.99


def test_cmyk_jpeg_reads_like_rgb():
    rgb = drawn("6").convert("RGB")
    buffer = io.BytesIO()
    rgb.convert("CMYK").save(buffer, "JPEG", quality=95)
    image = preprocess.load_image(buffer.getvalue())
    assert image.mode == "CMYK"
    assert similar(preprocess.to_mnist(image), preprocess.to_mnist(rgb)) > 0.97


def test_exif_orientation_is_applied():
    upright = drawn("7")
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: viewers turn it 90 degrees clockwise
    upright.rotate(90, expand=True).save(buffer, "JPEG", quality=95, exif=exif)
    assert preprocess.load_image(buffer.getvalue()).size == upright.size
    assert similar(preprocess.to_mnist(buffer.getvalue()), preprocess.to_mnist(upright)) > 0.97


def test_animated_gif_uses_its_first_frame():
    frames = [drawn("1").convert("P"), drawn("8").convert("P")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(buffer.getvalue())).n_frames == 2
    assert similar(preprocess.to_mnist(buffer.getvalue()), preprocess.to_mnist(drawn("1"))) > 0.99


def test_arrays_are_images_too(seven):
    as_uint8 = np.asarray(drawn("7"))
    assert similar(preprocess.to_mnist(as_uint8), seven) > 0.99
    assert similar(preprocess.to_mnist(as_uint8 / 255.0), seven) > 0.99
    with pytest.raises(DigitsError, match="array"):
        preprocess.to_mnist(np.zeros((2, 3, 4, 5)))
    with pytest.raises(DigitsError, match="NaN"):
        preprocess.to_mnist(np.full((28, 28), np.nan))


# --------------------------------------------------------------------------- hostile inputs


def png_header_only(width, height) -> bytes:
    """A PNG whose header claims ``width`` x ``height``: a decompression bomb's calling card."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


HOSTILE = {
    "empty file": (b"", "empty file"),
    "text named .png": (b"hello, I am not a picture\n" * 4, "not an image"),
    "truncated PNG": (png_bytes(drawn("7"))[:300], "truncated or corrupt image"),
    "decompression bomb": (png_header_only(100_000, 100_000), "above the limit of 40 megapixels"),
    "blank white": (png_bytes(Image.new("L", (64, 64), 255)), "no digit found"),
    "blank black": (png_bytes(Image.new("L", (64, 64), 0)), "no digit found"),
    "1x1 image": (png_bytes(Image.new("L", (1, 1), 0)), "no digit found"),
    "SVG named .png": (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" '
                       b'height="10"><text x="0" y="9">7</text></svg>', "SVG is a vector format"),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_input_is_one_clear_error(name, tmp_path):
    data, message = HOSTILE[name]
    path = tmp_path / "input.png"
    path.write_bytes(data)
    for source in (path, str(path), data):
        with pytest.raises(DigitsError, match=message) as error:
            preprocess.extract(source)
        assert "\n" not in str(error.value)


def test_blank_photo_of_paper_has_no_digit():
    rng = np.random.default_rng(1)
    x = np.linspace(0.5, 0.95, 640)[None, :] * np.ones((480, 1)) + rng.normal(0, 0.02, (480, 640))
    buffer = io.BytesIO()
    Image.fromarray((np.clip(x, 0, 1) * 255).astype(np.uint8)).save(buffer, "JPEG", quality=40)
    with pytest.raises(DigitsError, match="no digit found"):
        preprocess.extract(buffer.getvalue())


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(DigitsError, match="no such file"):
        preprocess.load_image(tmp_path / "nope.png")
    with pytest.raises(DigitsError, match="is a directory"):
        preprocess.load_image(tmp_path)


def test_pixel_budget_applies_to_decoded_images_too(monkeypatch):
    monkeypatch.setattr(preprocess.load, "MAX_PIXELS", 1000)
    with pytest.raises(DigitsError, match="megapixels"):
        preprocess.load_image(Image.new("L", (100, 100)))


# --------------------------------------------------------------------------- several digits


def test_a_number_is_segmented_left_to_right():
    number = drawn("2026", size=(700, 240), height=150)
    ex = preprocess.extract(number)
    assert len(ex.digits) == 4
    lefts = [box[1] for box in ex.boxes]
    assert lefts == sorted(lefts)
    singles = [preprocess.to_mnist(drawn(d)) for d in "2026"]
    for got, want in zip(ex.digits, singles):
        assert similar(got, want) > 0.85


def test_broken_strokes_stay_one_digit():
    x = np.asarray(drawn("4")).copy()
    x[120:126, :] = 255  # cut the digit across with a gap
    x[:, 99:101] = 255
    assert len(preprocess.segment(Image.fromarray(x))) == 1


def test_touching_digits_are_cut():
    zero = np.asarray(drawn("0", size=(110, 200), height=180))
    pair = np.minimum(np.pad(zero, ((0, 0), (0, 80)), constant_values=255),
                      np.pad(zero, ((0, 0), (80, 0)), constant_values=255))  # the loops touch
    ex = preprocess.extract(Image.fromarray(pair))
    assert len(ex.options) == 1 and len(ex.options[0]) > 1  # one blob, offered as 1, 2, ... digits
    probs = np.zeros((len(ex.pool), 10), np.float32)
    probs[:, 0] = 0.3  # the pair as one digit: unsure
    probs[ex.options[0][1], 0] = 0.9  # each half: a fairly sure zero is not enough
    ex.choose(probs)
    assert len(ex.digits) == 1
    probs[ex.options[0][1], 0] = 0.999  # each half: a sure zero
    ex.choose(probs)
    assert len(ex.digits) == 2 and ex.boxes[0][1] < ex.boxes[1][1]
    assert all(ex.options[g][c] for g, c in enumerate(preprocess.extract(Image.fromarray(pair)).choice))


def test_touching_digits_are_cut_along_the_valley_between_them():
    # two slanted strokes 60 px high, 10 px apart, each leaning 14 px: their boxes overlap
    # by 8 columns, so no straight cut separates them; a bar joins them near the bottom
    from digit_recognizer.preprocess.segmentation import cut_lattice, valley_cuts

    h, w = 60, 50
    ink = np.zeros((h, w), np.uint8)
    rows = np.arange(h)
    for start in (4, 18):  # each stroke leans right by 14 px from bottom to top
        for width in range(4):
            ink[rows, start + width + (h - 1 - rows) * 14 // (h - 1)] = 255
    ink[50:53, 8:30] = 255
    labels = (ink > 0).astype(np.int32)
    box = (0, 0, h, w)
    paths = valley_cuts(ink, labels, box, [1])
    left_stroke = np.zeros_like(ink, bool)
    left_stroke[rows, 4 + (h - 1 - rows) * 14 // (h - 1)] = True
    right_stroke = np.zeros_like(ink, bool)
    right_stroke[rows, 18 + (h - 1 - rows) * 14 // (h - 1)] = True
    columns = np.arange(w)[None, :]

    def separates(path):
        left, right = columns < path[:, None], columns >= path[:, None]
        return bool((left | ~left_stroke).all() and (right | ~right_stroke).all())

    assert any(separates(path) for path in paths)  # one cut leans with the strokes, between them
    # the two strokes are offered as two digits, each wholly on its side of that cut
    strip_labels, segments = cut_lattice(ink, labels, box, [1])
    assert segments[(0, len(paths) + 1)][0] == box  # the group whole is one reading
    k = next(i for i, path in enumerate(paths) if separates(path)) + 1
    left_piece = np.isin(strip_labels, segments[(0, k)][1])
    assert (left_piece >= left_stroke).all() and not (left_piece & right_stroke).any()


def test_specks_are_not_digits():
    x = np.asarray(drawn("3")).copy()
    x[10:12, 10:12] = 0  # dust
    x[220:223, 180:183] = 0
    assert len(preprocess.segment(Image.fromarray(x))) == 1


def test_save_steps_writes_what_the_network_saw(tmp_path):
    ex = preprocess.extract(drawn("42", size=(400, 240)))
    written = preprocess.save_steps(ex, tmp_path / "steps", "sample")
    names = sorted(p.name for p in written)
    assert names == ["sample-1-gray.png", "sample-1b-background.png", "sample-2-ink.png", "sample-2b-rules.png",
                     "sample-3-mask.png", "sample-3b-lines.png", "sample-4-digit0.png", "sample-4-digit1.png"]
    assert all(p.stat().st_size > 0 for p in written)


# --------------------------------------------------------------------------- several lines


def two_lines(top="7", bottom="73", turn=0.0) -> Image.Image:
    """``top`` over ``bottom`` in DejaVu Sans, the page turned by ``turn`` degrees."""
    image = Image.new("L", (520, 420), 255)
    font = ImageFont.truetype(FONT, 110)
    draw = ImageDraw.Draw(image)
    draw.text((120, 40), top, fill=0, font=font)
    draw.text((60, 230), bottom, fill=0, font=font)
    return image.rotate(turn, fillcolor=255)


@pytest.mark.parametrize("turn", [0.0, 6.0])
def test_lines_are_found_top_to_bottom_and_read_left_to_right(turn):
    ex = preprocess.extract(two_lines(turn=turn))
    assert ex.line_lengths == [1, 2]
    boxes = ex.boxes
    assert boxes[0][2] < boxes[1][0] and boxes[0][2] < boxes[2][0]  # the first line is above the second
    assert boxes[1][1] < boxes[2][1]  # left to right within a line
    for got, want in zip(ex.digits, "773"):
        assert similar(got, preprocess.to_mnist(drawn(want))) > 0.8


def test_one_line_is_not_split_by_digits_of_different_heights():
    image = Image.new("L", (600, 260), 255)
    draw = ImageDraw.Draw(image)
    draw.text((40, 60), "4", fill=0, font=ImageFont.truetype(FONT, 150))
    draw.text((170, 100), "2", fill=0, font=ImageFont.truetype(FONT, 100))  # smaller, lower
    draw.text((300, 40), "9", fill=0, font=ImageFont.truetype(FONT, 150))
    assert preprocess.extract(image).line_lengths == [3]


# --------------------------------------------------------------------------- ruled paper


def on_ruled_paper(text="4", spacing=24, turn=0.0, grid=False, rule=150) -> Image.Image:
    """``text`` written over ruled (or squared) paper whose rules cross it, the page turned."""
    x = np.asarray(drawn(text, size=(400, 300), height=170), np.float32)
    paper = np.full_like(x, 250.0)
    paper[(np.arange(300) % spacing) < 2, :] = rule
    if grid:
        paper[:, (np.arange(400) % spacing) < 2] = rule
    page = np.minimum(paper, x)
    return Image.fromarray(page.astype(np.uint8)).rotate(turn, Image.Resampling.BILINEAR, fillcolor=250)


@pytest.mark.parametrize("grid, turn", [(False, 0.0), (False, 7.0), (True, -5.0)])
def test_rules_are_removed_and_the_strokes_kept(grid, turn, tmp_path):
    ex = preprocess.extract(on_ruled_paper("4", grid=grid, turn=turn))
    preprocess.save_steps(ex, tmp_path, "ruled")
    shown = np.asarray(Image.open(tmp_path / "ruled-2b-rules.png"))
    assert (shown == (40, 90, 255)).all(axis=-1).sum() == ex.rules.sum()  # the rules found, in blue
    assert ex.rules.sum() > 0.5 * 400 * 300 / 24  # most of the rules were found
    assert len(ex.digits) == 1
    plain = preprocess.to_mnist(Image.fromarray(np.asarray(drawn("4", size=(400, 300), height=170))).rotate(
        turn, fillcolor=255))
    assert similar(ex.digits[0], plain) > 0.85


def test_faint_rules_broken_into_dashes_are_still_rules():
    # a faint ruling thresholds into dashes (20 px of rule, 4 px of paper): still a ruled page
    x = np.asarray(on_ruled_paper("4", rule=250), np.float32)
    dashes = np.full_like(x, 250.0)
    dashes[(np.arange(300) % 24) < 2, :] = np.where(np.arange(400) % 24 < 20, 150.0, 250.0)
    ex = preprocess.extract(Image.fromarray(np.minimum(x, dashes).astype(np.uint8)))
    assert ex.rules.sum() > 0.3 * 400 * 300 / 24  # most of the dashes were found
    assert len(ex.digits) == 1


def test_a_ruled_pages_margin_is_no_digit():
    # the margin crosses each rule once, and over only 88 % of the height (it runs off the photo)
    x = np.asarray(drawn("4", size=(400, 300), height=170), np.float32)
    paper = np.full_like(x, 250.0)
    paper[(np.arange(300) % 24) < 2, :] = 150
    paper[:265, 60:62] = 150
    page = Image.fromarray(np.minimum(paper, x).astype(np.uint8)).rotate(7, Image.Resampling.BILINEAR, fillcolor=250)
    assert len(preprocess.extract(page).digits) == 1


def test_page_angle_is_found():
    from digit_recognizer.preprocess import rules

    mask = np.zeros((200, 300), bool)
    for y0 in range(10, 200, 20):
        xs = np.arange(300)
        ys = np.round(y0 + xs * np.tan(np.radians(4.0))).astype(int)
        inside = ys < 200
        mask[ys[inside], xs[inside]] = True
    assert abs(rules.page_angle(mask) - 4.0) < 0.2


def test_a_long_digit_stroke_is_not_a_rule():
    """A thin 7's bar is long and straight, but one bar alone is not a ruled page."""
    ex = preprocess.extract(drawn("7", size=(260, 260), height=240))
    assert not ex.rules.any()


# --------------------------------------------------------------------------- light and size


def lit(image: Image.Image, light: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.asarray(image, np.float32) * light, 0, 255).astype(np.uint8))


def test_the_background_keeps_a_shadow_edge():
    from digit_recognizer.preprocess import page

    x = np.full((240, 320), 40, np.uint8)  # bright ink convention: the shadowed half is "inkier"
    x[:, 160:] = 140
    x[100:110, 60:260] = 250  # a stroke across the edge
    background = page.estimate_background(x, even=False)
    paper = np.ones(240, bool)
    paper[90:120] = False  # (along the stroke, a straight run reaches into the shadow)
    assert np.abs(background[paper, :150].astype(int) - 40).max() <= 3
    assert np.abs(background[:, 170:].astype(int) - 140).max() <= 3
    assert background[100:110, 60:260].max() <= 145  # the stroke is not background


@pytest.mark.parametrize("kind", ["hard shadow", "lamp falloff"])
def test_shadows_and_falloff_are_not_ink(kind, seven):
    yy, xx = np.mgrid[:240, :200].astype(np.float32)
    if kind == "hard shadow":  # a straight shadow edge across the digit
        light = np.where(xx + 0.4 * yy < 130, 0.45, 1.0)
    else:  # a lamp at the top left corner
        light = np.clip(1.1 - 0.9 * np.hypot(yy, xx) / np.hypot(240, 200), 0.25, 1.0)
    ex = preprocess.extract(lit(drawn("7"), light))
    assert len(ex.digits) == 1 and similar(ex.digits[0], seven) > 0.85


@pytest.mark.parametrize("resample", [Image.Resampling.NEAREST, Image.Resampling.BILINEAR])
def test_a_tiny_digit_upscaled_by_an_app_is_read(resample):
    small = drawn("3", size=(30, 24), height=12)  # 12 px high
    blurred = small.filter(ImageFilter.GaussianBlur(0.6))
    big = blurred.resize((30 * 7, 24 * 7), resample)
    low_contrast = Image.fromarray((120 + np.asarray(big, np.float32) / 255 * 100).astype(np.uint8))
    digits = preprocess.segment(low_contrast)
    assert len(digits) == 1 and similar(digits[0], preprocess.to_mnist(drawn("3"))) > 0.75


def photo_noise(image: Image.Image, seed=0) -> Image.Image:
    """What a phone adds: a slight blur and sensor noise."""
    rng = np.random.default_rng(seed)
    x = np.asarray(image.filter(ImageFilter.GaussianBlur(1.0)), np.float32) + rng.normal(0, 3, image.size[::-1])
    return Image.fromarray(np.clip(x, 0, 255).astype(np.uint8))


@pytest.mark.parametrize("slope", [0.0, 0.3, 1.2])
def test_a_hard_shadow_edge_on_a_blank_page_is_no_ink(slope):
    yy, xx = np.mgrid[:480, :640].astype(np.float32)
    light = np.where(xx > 300 + slope * (yy - 240), 0.45, 1.0)
    page = photo_noise(lit(Image.new("L", (640, 480), 230), light))
    with pytest.raises(DigitsError, match="no digit found"):
        preprocess.extract(page)


@pytest.mark.parametrize("half_angle", [30, 45])
def test_a_shadow_wedge_beside_a_digit_adds_no_digit(half_angle, seven):
    yy, xx = np.mgrid[:480, :640].astype(np.float32)
    # two straight shadow edges meeting beside the digit: a dark wedge, its tip narrow
    wedge = np.abs(np.arctan2(yy - 240, xx - 380)) < np.radians(half_angle)
    light = np.where(wedge, 0.45, 1.0) * np.where(xx > 200 + 0.3 * yy, 0.7, 1.0)
    page = photo_noise(lit(drawn("7", size=(640, 480), height=150, ink=40, paper=230).transform(
        (640, 480), Image.Transform.AFFINE, (1, 0, 120, 0, 1, 0), fillcolor=230), light))
    ex = preprocess.extract(page)
    assert len(ex.digits) == 1 and similar(ex.digits[0], seven) > 0.85


@pytest.mark.parametrize("degrees", [11, -34])  # halfway between two of the line opening's angles
def test_a_pen_shadow_band_at_any_angle_is_no_ink(degrees, seven):
    # the shadow of a pen across the page: a band 40 px wide taking half the light, passing
    # beside the digit, and a lamp's falloff (as in a photo)
    yy, xx = np.mgrid[:480, :640].astype(np.float32)
    a = np.radians(degrees)
    across = (xx - 320) * -np.sin(a) + (yy - 330) * np.cos(a)
    light = np.where(np.abs(across) < 20, 0.5, 1.0) * (1.0 - 0.3 * xx / 640)
    page = drawn("7", size=(640, 480), height=120, ink=40, paper=230)
    page = page.transform((640, 480), Image.Transform.AFFINE, (1, 0, 0, 0, 1, 80), fillcolor=230)
    ex = preprocess.extract(photo_noise(lit(page, light)))
    assert len(ex.digits) == 1 and similar(ex.digits[0], seven) > 0.85


@pytest.mark.parametrize("scene", ["dark corners and a glare spot", "a page mostly in shadow", "a lit wedge"])
def test_uneven_light_keeps_dark_ink_on_light_paper(scene, seven):
    yy, xx = np.mgrid[:480, :640].astype(np.float32)
    if scene == "dark corners and a glare spot":
        r = np.hypot((yy - 240) / 480, (xx - 320) / 640) * 2
        light = (1 - 0.6 * r**2) + 0.5 * np.exp(-((yy - 150) ** 2 + (xx - 450) ** 2) / (2 * 60.0**2))
    elif scene == "a page mostly in shadow":  # a lamp's spot is the bright tail of a flat page
        light = 0.3 + 0.8 * np.exp(-((yy - 120) ** 2 + (xx - 140) ** 2) / (2 * 70.0**2))
    else:  # a narrow lit wedge between two shadows, through the digit
        light = np.where(np.abs(np.arctan2(yy - 480, xx - 250)) < np.radians(110) - 0.0, 0.35, 1.0)
        light = np.where((xx - 250) * 0.4 + (yy - 480) > 0, light, 0.35)
    photo = photo_noise(lit(drawn("7", size=(640, 480), height=120, ink=40, paper=235), np.clip(light, 0.2, 1.3)))
    ex = preprocess.extract(photo)
    assert ex.inverted  # dark ink, read the right way round
    assert len(ex.digits) == 1 and similar(ex.digits[0], seven) > 0.85


def test_a_blurred_10_px_digit_in_a_noisy_photo_is_found():
    page = Image.new("L", (640, 480), 205)
    ImageDraw.Draw(page).text((400, 300), "3", fill=60, font=ImageFont.truetype(FONT, 14), anchor="mm")
    photo = photo_noise(page)  # (blurred by 1 px: the strokes spread over 3-4 px)
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=60)
    ex = preprocess.extract(buffer.getvalue())
    assert len(ex.digits) == 1
    top, left, bottom, right = (v * 640 / ex.gray.shape[1] for v in ex.boxes[0])
    assert 285 <= top < bottom <= 315 and 385 <= left < right <= 415


@pytest.mark.parametrize("digit, height, blur", [("5", 12, 1.0), ("0", 10, 1.0), ("8", 12, 1.0)])
def test_a_blurred_small_digit_is_not_read_as_a_blob(digit, height, blur):
    from digit_recognizer.preprocess.normalize import to_28x28

    big = 255 - np.asarray(drawn(digit), np.float32)  # 150-px glyph, area-averaged to `height` px
    size = (round(200 * height / 110), round(240 * height / 110))
    small = ndimage.gaussian_filter(np.asarray(Image.fromarray(big).resize(size, Image.Resampling.BOX)) / 255, blur)
    rows, cols = np.flatnonzero(small.max(1) > 0.05 * small.max()), np.flatnonzero(small.max(0) > 0.05 * small.max())
    crop = small[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].astype(np.float32)
    assert similar(to_28x28(crop), preprocess.to_mnist(drawn(digit))) > 0.8


@pytest.mark.parametrize("digit_in", ["the light, at the shadow's edge", "the deep shadow"])
def test_a_hard_deep_shadow_is_no_table_and_keeps_the_digit(digit_in, seven):
    # Part of the page in a shadow so deep that the lit part looks like a sheet on a dark table:
    # the digit, whether it reaches the shadow's slanted edge or lies in the shadow, is kept.
    yy, xx = np.mgrid[:480, :640].astype(np.float32)
    lit_side = xx < 400 + 0.2 * (yy - 240)
    if digit_in == "the deep shadow":
        light, centre = np.where(lit_side, 0.15, 1.0), (250, 240)
    else:
        light, centre = np.where(lit_side, 1.0 - 0.4 * xx / 640, 0.15), (352, 240)
    page = Image.new("L", (640, 480), 235)
    ImageDraw.Draw(page).text(centre, "7", fill=30, font=ImageFont.truetype(FONT, 150), anchor="mm")
    ex = preprocess.extract(photo_noise(lit(page, light)))
    assert ex.inverted and len(ex.digits) == 1 and similar(ex.digits[0], seven) > 0.9


def test_a_small_digit_in_a_deep_shadow_beside_lit_paper():
    # The detail look at a small digit must not take the lit paper's noise for ink (the
    # shadow's edges pull the ink threshold down into it), nor the lit paper for a sheet.
    yy, xx = np.mgrid[:480, :640].astype(np.float32)
    light = np.where((xx - 320) + 0.8 * (yy - 240) < 0, 0.2, 1.0)
    light = np.where(np.hypot(xx - 500, yy - 120) < 90, 1.15, light)
    page = Image.new("L", (640, 480), 220)
    ImageDraw.Draw(page).text((200, 200), "0", fill=20, font=ImageFont.truetype(FONT, 22), anchor="mm")
    buffer = io.BytesIO()
    photo_noise(lit(page, light)).save(buffer, "JPEG", quality=75)
    ex = preprocess.extract(buffer.getvalue())
    assert ex.inverted and len(ex.digits) == 1
    top, left, bottom, right = (v * 640 / ex.gray.shape[1] for v in ex.boxes[0])
    assert 185 <= top < bottom <= 215 and 185 <= left < right <= 215


def test_a_small_digit_under_wedges_of_deep_shadow_in_a_photo():
    # A "0" 40 px high in a 800x600 phone photo (JPEG) crossed by a pen's shadow and a deep
    # wedge: looked at in detail, the lit paper's noise passed the ink threshold, which the
    # shadows' edges had pulled down, and covered a third of the page.
    ex = preprocess.extract(Path(__file__).parent / "images" / "small-0-in-deep-shadow.jpg")
    assert ex.mask.mean() < 0.05
    assert len(ex.digits) == 1
