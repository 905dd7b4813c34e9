"""The drawing page in a real browser: Chromium, driven by Playwright, draws digits with the mouse.

Runs ``digits serve`` on a free port of 127.0.0.1 with the shipped model and
Debian's Chromium (no browser download); ``DIGITS_TEST_MODEL=FILE`` tests another
model file instead. Also makes the README screenshot:

    python tests/test_browser.py docs/screenshot.png
"""

import math
import os
import sys
from pathlib import Path

import pytest

from digit_recognizer import modelfile

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _arc(cx, cy, rx, ry, start, end, n=24):
    """Points on an ellipse from angle ``start`` to ``end`` (degrees; 0 = right, 90 = down)."""
    return [(cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
            for a in (start + (end - start) * i / n for i in range(n + 1))]


# Each digit as pen strokes in the unit square (x right, y down), written the way people
# commonly write them; the page scales them onto its canvas.
STROKES = {
    0: [_arc(0.5, 0.5, 0.2, 0.32, -90, 275)],
    1: [[(0.44, 0.2), (0.55, 0.14), (0.55, 0.86)]],
    2: [_arc(0.5, 0.33, 0.2, 0.18, 190, 370) + [(0.28, 0.84), (0.76, 0.84)]],
    3: [_arc(0.48, 0.32, 0.2, 0.17, 200, 450) + _arc(0.48, 0.66, 0.22, 0.19, -90, 160)],
    4: [[(0.56, 0.14), (0.26, 0.6), (0.78, 0.6)], [(0.62, 0.32), (0.62, 0.88)]],
    5: [[(0.72, 0.16), (0.34, 0.16), (0.3, 0.47)] + _arc(0.48, 0.64, 0.23, 0.2, -130, 150)],
    6: [[(0.66, 0.14), (0.45, 0.3), (0.33, 0.52)] + _arc(0.5, 0.67, 0.18, 0.18, 180, 540)],
    7: [[(0.26, 0.18), (0.76, 0.18), (0.42, 0.86)]],
    8: [[(0.5 + 0.19 * math.sin(2 * t), 0.5 - 0.34 * math.cos(t))
         for t in (2 * math.pi * i / 48 for i in range(49))]],
    9: [_arc(0.5, 0.33, 0.18, 0.17, 0, 360), [(0.68, 0.33), (0.64, 0.87)]],
}


@pytest.fixture(scope="module")
def server():
    path = Path(os.environ.get("DIGITS_TEST_MODEL") or modelfile.default_model_path())
    if not path.exists():
        pytest.skip("the shipped model is not built yet")
    from digit_recognizer.serve.process import serving

    with serving(path) as running:
        yield running.url


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(browser, server):
    page = browser.new_page(viewport={"width": 900, "height": 760})
    page.problems = []  # console errors (CSP violations among them) and failed requests
    expected = "status of 422"  # the bad upload's answer, which Chromium logs as an error too
    page.on("console", lambda m: m.type == "error" and expected not in m.text and page.problems.append(m.text))
    page.on("pageerror", lambda e: page.problems.append(str(e)))
    page.on("requestfailed", lambda r: page.problems.append(f"{r.url}: {r.failure}"))
    page.goto(server)
    yield page
    assert not page.problems


def draw(page, digit: int) -> None:
    """Clear the pad and draw ``digit`` stroke by stroke with the mouse, as a person would."""
    page.click("#clear")
    box = page.locator("#pad").bounding_box()
    for stroke in STROKES[digit]:
        points = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for point in points[1:]:
            page.mouse.move(*point, steps=3)
        page.mouse.up()


def shown_answer(page) -> str:
    """The digit the page shows once it has answered for the latest drawing."""
    from playwright.sync_api import expect

    expect(page.locator("body")).to_have_attribute("data-state", "idle", timeout=10_000)
    return page.locator("#digit").inner_text()


@pytest.mark.parametrize("digit", sorted(STROKES))
def test_drawn_digit_is_recognised(page, digit, tmp_path):
    draw(page, digit)
    answer = shown_answer(page)
    page.screenshot(path=str(tmp_path / f"drawn-{digit}.png"))
    assert answer == str(digit), f"drew {digit}, the page says {answer} (screenshot in {tmp_path})"
    # The page shows the bars, the confidence and the 28x28 image the network saw.
    top = page.locator("#bars li.top .label")
    assert top.inner_text() == str(digit)
    assert "% sure" in page.locator("#confidence").inner_text()
    assert page.locator("#seen").evaluate("img => img.complete && img.naturalWidth") == 28


def test_prediction_is_live_while_drawing(page):
    """A long, slow stroke gets answers before the pen is lifted (debounced, not only at the end)."""
    page.click("#clear")
    asked = []

    def count(request):
        if "/api/predict" in request.url or "/api/explain" in request.url:  # the inside view asks the latter
            asked.append(request)

    page.on("request", count)
    box = page.locator("#pad").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 0.15 * box["height"])
    page.mouse.down()
    for i in range(1, 31):  # about 0.8 s of drawing
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + (0.15 + 0.7 * i / 30) * box["height"])
        page.wait_for_timeout(25)
    while_drawing = len(asked)
    page.mouse.up()
    page.remove_listener("request", count)
    assert shown_answer(page) == "1"
    assert while_drawing >= 2


def test_drawing_with_a_finger(browser, server):
    """Touch input: a finger drags a 1 across the pad (Chromium's touch events -> pointer events)."""
    context = browser.new_context(has_touch=True, viewport={"width": 420, "height": 800})
    page = context.new_page()
    page.goto(server)
    box = page.locator("#pad").bounding_box()
    touch = context.new_cdp_session(page)
    points = [(box["x"] + x * box["width"], box["y"] + y * box["height"])
              for x, y in [(0.5, 0.15 + 0.7 * i / 20) for i in range(21)]]
    for kind, (x, y) in zip(["touchStart"] + ["touchMove"] * (len(points) - 1), points):
        touch.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [{"x": x, "y": y}]})
    touch.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    assert shown_answer(page) == "1"
    context.close()


def test_clear_resets_the_page(page):
    draw(page, 7)
    shown_answer(page)
    page.click("#clear")
    assert shown_answer(page) == "?"
    assert page.locator("#bars li.top").count() == 0
    assert page.locator("#pad").evaluate(
        "c => c.getContext('2d').getImageData(0, 0, c.width, c.height).data.every((v, i) => i % 4 == 3 || v == 0)")


def test_upload_button_predicts_a_file(page, tmp_path):
    from PIL import Image, ImageDraw

    photo = Image.new("RGB", (400, 300), (235, 232, 225))  # dark ink on light paper
    ImageDraw.Draw(photo).line([(150, 60), (250, 60), (185, 250)], fill=(30, 30, 40), width=16)
    photo.save(tmp_path / "seven.jpg", quality=90)
    page.set_input_files("#upload", str(tmp_path / "seven.jpg"))
    assert shown_answer(page) == "7"


def test_a_blank_or_bad_upload_shows_the_error(page, tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    page.set_input_files("#upload", str(tmp_path / "notes.png"))
    assert shown_answer(page) == "?"
    assert "not an image" in page.locator("#status").inner_text()


def make_screenshot(out: str, digit: int = 3) -> None:
    """Draw ``digit`` in the page and save a screenshot of it for the README."""
    from playwright.sync_api import sync_playwright

    from digit_recognizer.serve.process import serving

    model = os.environ.get("DIGITS_TEST_MODEL") or modelfile.default_model_path()
    with serving(model) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 700}, device_scale_factor=1)
        page.goto(server.url)
        draw(page, digit)
        print(f"drew {digit}, the page says {shown_answer(page)}", file=sys.stderr)
        page.wait_for_timeout(400)  # the bars end their transition
        page.screenshot(path=out)  # the first screen: the pad, the answer, the inside view's start
        browser.close()
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    make_screenshot(sys.argv[1] if len(sys.argv) > 1 else os.path.join("docs", "screenshot.png"))


def test_api_docs_render_offline(browser, server):
    """/docs (Swagger UI) renders with nothing but the server reachable, under its CSP."""
    page = browser.new_page()
    problems = []
    page.on("console", lambda m: m.type == "error" and problems.append(m.text))
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(server)
               else (problems.append(f"fetched from elsewhere: {route.request.url}"), route.abort()))
    page.goto(server + "/docs")
    from playwright.sync_api import expect

    expect(page.locator(".swagger-ui .info .title")).to_contain_text("digit-recognizer", timeout=20_000)
    expect(page.locator(".opblock-summary-path", has_text="/api/predict").first).to_be_visible()
    page.close()
    assert not problems
