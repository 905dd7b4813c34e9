"""The page's teaching views in a real browser: "inside the network" and "watch it learn".

Chromium (Debian's), driven by Playwright, draws digits with the mouse against a real
``digits serve``. The screenshots each test takes are the ones in the docs; to make them again:

    DIGITS_SCREENSHOTS=docs python -m pytest tests/test_browser_views.py
"""

import json
import os
import time
from pathlib import Path

import pytest

from digit_recognizer import models
from test_browser import browser, draw, shown_answer  # noqa: F401  (browser: the same Chromium fixture)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(mnist_data_dir):
    from digit_recognizer import modelfile
    from digit_recognizer.serve.process import serving

    path = Path(os.environ.get("DIGITS_TEST_MODEL") or modelfile.default_model_path())
    if not path.exists():
        pytest.skip("the shipped model is not built yet")
    env = {"DIGITS_DATA_DIR": os.environ.get("DIGITS_DATA_DIR", str(mnist_data_dir))}
    with serving(path, workers=1, env=env) as running:
        yield running.url


def open_page(browser, server, width=1240, height=900, expected_status=None):
    """A fresh page; ``page.problems`` collects console errors (CSP violations among them), page
    errors and failed requests, except the log line of an ``expected_status`` answer."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.problems = []
    expected = f"status of {expected_status}" if expected_status else None
    page.on("console", lambda m: m.type == "error" and not (expected and expected in m.text)
            and page.problems.append(m.text))
    page.on("pageerror", lambda e: page.problems.append(str(e)))
    page.on("requestfailed", lambda r: "/api/train/events" not in r.url  # EventSource closed on purpose
            and page.problems.append(f"{r.url}: {r.failure}"))
    page.goto(server)
    return page


def screenshot(page, name, tmp_path, **options):
    folder = Path(os.environ.get("DIGITS_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(400)  # bars end their 0.15 s transition: for the picture, not for a check
    page.screenshot(path=str(folder / name), **options)


def test_inside_view_shows_every_layer_while_drawing(browser, server, tmp_path):
    from playwright.sync_api import expect

    page = open_page(browser, server)
    explained = []
    page.on("response", lambda r: "/api/explain" in r.url and r.ok and explained.append(r.json()))
    expect(page.locator("#inside-empty")).to_be_visible()
    draw(page, 4)
    assert shown_answer(page) == "4"
    expect(page.locator("#inside")).to_be_visible()
    architecture = page.evaluate("fetch('/api/model').then(r => r.json())")["architecture"]
    layers = page.locator("#layers > li.layer")
    expect(layers).to_have_count(len(architecture))
    # every layer, in order, each with its picture: feature maps as an image, vectors as bars
    assert [layers.nth(i).get_attribute("data-type") for i in range(len(architecture))] == \
        [layer["type"] for layer in architecture]
    for i, layer in enumerate(architecture):
        item = layers.nth(i)
        drawn = item.locator("img.maps, canvas.vector")
        expect(drawn).to_have_count(1)
        if item.locator("img.maps").count():
            assert item.locator("img.maps").evaluate("img => img.complete && img.naturalWidth > 0")
    last = explained[-1]
    assert [view["type"] for view in last["layers"]] == [layer["type"] for layer in architecture]
    expect(page.locator("#steps figure")).to_have_count(len(last["steps"]))
    for image in ("#inside-input", "#saliency"):
        assert page.locator(image).evaluate("img => img.complete && img.naturalWidth") == 28
    expect(page.locator("#inside-probabilities li.top .label")).to_have_text("4")
    # live: more drawing asks again before the pen is lifted
    before = len(explained)
    box = page.locator("#pad").bounding_box()
    page.mouse.move(box["x"] + 0.2 * box["width"], box["y"] + 0.95 * box["height"])
    page.mouse.down()
    for i in range(1, 25):
        page.mouse.move(box["x"] + (0.2 + 0.02 * i) * box["width"], box["y"] + 0.95 * box["height"])
        page.wait_for_timeout(25)
    page.mouse.up()
    shown_answer(page)
    assert len(explained) > before + 1
    draw(page, 4)
    shown_answer(page)
    screenshot(page, "web-inside.png", tmp_path, full_page=True)
    assert not page.problems
    page.close()


def test_a_number_shows_first_then_its_digits_bars(browser, server, tmp_path):
    page = open_page(browser, server, width=900, height=800)
    page.click("#tab-learn")  # the plain reading, /api/predict
    page.click("#clear")
    box = page.locator("#pad").bounding_box()
    for stroke in ([(0.15, 0.3), (0.22, 0.22), (0.22, 0.78)], [(0.62, 0.25), (0.85, 0.25), (0.68, 0.78)]):
        page.mouse.move(box["x"] + stroke[0][0] * box["width"], box["y"] + stroke[0][1] * box["height"])
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=6)
        page.mouse.up()
    assert shown_answer(page) == "17"
    buttons = page.locator("#positions button")
    assert buttons.all_inner_texts() == ["1", "7"]
    assert page.locator("#bars li.top .label").inner_text() == "1"
    buttons.nth(1).click()
    assert page.locator("#bars li.top .label").inner_text() == "7"
    page.click("#tab-inside")  # explains the digit chosen
    assert shown_answer(page) == "17"
    assert page.locator("#inside-probabilities li.top .label").inner_text() == "7"
    buttons.nth(0).click()
    shown_answer(page)
    assert page.locator("#inside-probabilities li.top .label").inner_text() == "1"
    assert not page.problems
    page.close()


def test_not_a_digit_is_shown_as_an_answer(browser, server):
    """A model with a "not a digit" class refuses with {"error": "not a digit", ...} and its
    probabilities: the page says so where the digit would be, with that class's bar on top."""
    page = open_page(browser, server, width=900, height=800)
    page.click("#tab-learn")  # the plain reading, /api/predict
    classes = [str(k) for k in range(10)] + ["not a digit"]
    page.route("**/api/model", lambda route: route.fulfill(json={"name": "cnn", "parameters": 1, "classes": classes}))
    page.route("**/api/predict*", lambda route: route.fulfill(json={
        "error": "not a digit", "not_a_digit": 0.93, "probabilities": [0.007] * 10 + [0.93]}))
    page.reload()
    page.click("#tab-learn")
    draw(page, 8)
    assert shown_answer(page) == "Not a digit"
    assert page.locator("#confidence").inner_text() == "93.0% sure"
    assert page.locator("#bars li.top .label").inner_text() == "not a digit"
    assert "does not look like a digit" in page.locator("#status").inner_text()
    assert not page.problems
    page.close()


def _train_settings(page, **settings):
    for name, value in settings.items():
        selector = f'#train-form [name="{name}"]'
        if name == "architecture":
            page.select_option(selector, value)
        else:
            page.fill(selector, str(value))


def test_watch_it_learn_then_read_with_the_new_model(browser, server, tmp_path):
    from playwright.sync_api import expect

    page = open_page(browser, server, expected_status=409)  # the second training, refused
    page.click("#tab-learn")
    page.evaluate("fetch('/api/train/reset', {method: 'POST'})")
    expect(page.locator("#train-status")).to_have_attribute("data-status", "idle")
    # lenet5 on 2,000 images passes 90% on the validation digits within about two epochs here
    _train_settings(page, architecture="lenet5", learning_rate=0.003, batch_size=32, images=2000, epochs=30)
    # every redraw of the accuracy chart, recorded in the page (however fast the training runs)
    page.evaluate("""window.drawnPoints = [];
        new MutationObserver(() => window.drawnPoints.push(Number(document.getElementById('accuracy-chart').dataset.points)))
            .observe(document.getElementById('accuracy-chart'), {attributes: true, attributeFilter: ['data-points']});""")
    page.click("#train")
    expect(page.locator("#train-status")).to_have_attribute("data-status", "running", timeout=60_000)

    # the busy server says so to a second training
    busy = page.evaluate("""fetch('/api/train', {method: 'POST', headers: {'Content-Type': 'application/json'},
                            body: JSON.stringify({architecture: 'mlp'})}).then(async r => [r.status, await r.json()])""")
    assert busy[0] == 409 and "already running" in busy[1]["error"]

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if float(page.locator("#val-accuracy").get_attribute("data-value")) >= 0.9:
            break
        page.wait_for_timeout(100)
    accuracy = float(page.locator("#val-accuracy").get_attribute("data-value"))
    assert accuracy >= 0.9, f"validation accuracy {accuracy} after 240 s"
    points = [n for n in page.evaluate("window.drawnPoints") if n > 0]
    assert len(set(points)) >= 5 and points == sorted(points), points  # the curves grew, batch by batch
    cells = page.locator("#grid .cell")
    expect(cells).to_have_count(40)
    assert page.locator("#grid .cell.right").count() >= 30
    assert page.locator("#filters").evaluate("img => img.complete && img.naturalWidth > 0")

    page.click("#stop")
    expect(page.locator("#train-status")).to_have_attribute("data-status", "stopped", timeout=30_000)
    assert "Stopped after" in page.locator("#train-status").inner_text()
    expect(page.locator("#model-choice")).to_be_visible()
    assert page.locator('input[name="model"][value="trained"]').is_checked()
    expect(page.locator("#download")).to_be_visible()

    with page.expect_response(lambda r: "/api/predict?model=trained" in r.url) as answered:
        draw(page, 7)
    assert answered.value.ok
    assert shown_answer(page) == "7"
    expect(page.locator("#model-info")).to_contain_text("Reading with your model: lenet5")
    screenshot(page, "web-learn.png", tmp_path, full_page=True)
    download = page.evaluate("fetch('/api/train/model').then(r => [r.status, r.headers.get('content-disposition')])")
    assert download[0] == 200 and "lenet5" in download[1]
    state = page.evaluate("fetch('/api/train').then(r => r.json())")
    assert state["status"] == "stopped" and state["model"]["metrics"]["accuracy"] >= 0.85  # a few steps on
    assert state["model"]["name"] == "lenet5" and json.dumps(state["model"]["training"]["settings"])

    page.click("#tab-inside")
    expect(page.locator("#layers > li.layer")).to_have_count(len(models.ARCHITECTURES["lenet5"]))
    page.click("#tab-learn")
    page.click("#reset")
    expect(page.locator("#train-status")).to_have_attribute("data-status", "idle")
    expect(page.locator("#model-choice")).to_be_hidden()
    expect(page.locator("#model-info")).not_to_contain_text("your model")
    assert not page.problems
    page.close()


def test_phone_width_with_a_finger(browser, server, tmp_path):
    """A phone: the views stack under the pad, nothing is wider than the screen, touch draws."""
    context = browser.new_context(has_touch=True, is_mobile=True, viewport={"width": 390, "height": 844},
                                  device_scale_factor=2)
    page = context.new_page()
    page.goto(server)
    box = page.locator("#pad").bounding_box()
    touch = context.new_cdp_session(page)
    points = [(box["x"] + (0.3 + 0.4 * t) * box["width"], box["y"] + 0.2 * box["height"]) for t in (0, 0.5, 1)]
    points += [(box["x"] + (0.7 - 0.25 * t) * box["width"], box["y"] + (0.2 + 0.65 * t) * box["height"])
               for t in (0.1 * i for i in range(1, 11))]
    for kind, (x, y) in zip(["touchStart"] + ["touchMove"] * (len(points) - 1), points):
        touch.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [{"x": x, "y": y}]})
    touch.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    assert shown_answer(page) == "7"
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    view = page.locator("#view-inside").bounding_box()
    assert view["y"] > box["y"] + box["height"] and view["width"] <= 390
    screenshot(page, "web-phone.png", tmp_path)
    context.close()
