"""Predictions on people's images: the JSON contract, `digits predict`, `src/inference.py`.

Plumbing tests use a small untrained network (they check what is reported,
not whether it is right); accuracy tests use the model shipped with the package.
"""

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digit_recognizer import cli, modelfile, models, nn, predict
from test_preprocess import HOSTILE, drawn, png_bytes

ROOT = Path(__file__).resolve().parents[1]
SPEC = [
    {"type": "Conv2D", "in_channels": 1, "out_channels": 4, "kernel_size": 3, "padding": 1},
    {"type": "MaxPool2D", "kernel_size": 2},
    {"type": "ReLU"},
    {"type": "Flatten"},
    {"type": "Dense", "in_features": 784, "out_features": 10},
]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    nn.manual_seed(0)
    meta = {"spec": SPEC, "mean": 0.13, "std": 0.31, "classes": [str(d) for d in range(10)], "dataset": "mnist"}
    return modelfile.save(tmp_path_factory.mktemp("model") / "tiny.safetensors", models.build(SPEC), meta)


@pytest.fixture(scope="module")
def model(model_file):
    return modelfile.load(model_file)


@pytest.fixture(scope="module")
def shipped():
    path = modelfile.default_model_path()
    if not path.exists():
        pytest.skip(f"the shipped model is not there yet ({path})")
    return modelfile.load(path)


def extra_formats() -> dict[str, bytes]:
    """Files that are fine though unusual: each must give a reading."""
    buffer = io.BytesIO()
    frames = [drawn("1").convert("P"), drawn("8").convert("P")]
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100)
    gif = buffer.getvalue()
    buffer = io.BytesIO()
    drawn("6").convert("CMYK").save(buffer, "JPEG", quality=90)
    cmyk = buffer.getvalue()
    sixteen = png_bytes(Image.fromarray(np.asarray(drawn("4")).astype(np.uint16) * 257))
    return {"animated.gif": gif, "cmyk.jpg": cmyk, "sixteen-bit.png": sixteen}


# --------------------------------------------------------------------------- library


def check_reading(result, top_k=3):
    assert isinstance(result["digit"], int) and 0 <= result["digit"] <= 9
    assert 0.0 <= result["confidence"] <= 1.0
    assert isinstance(result["low_confidence"], bool)
    assert result["low_confidence"] == (result["confidence"] < predict.LOW_CONFIDENCE)
    top = result["top_k"]
    assert len(top) == top_k and [p for _, p in top] == sorted((p for _, p in top), reverse=True)
    assert len({d for d, _ in top}) == top_k


def test_predict_image_follows_the_contract(model):
    result = predict.predict_image(model, drawn("7"), top_k=4)
    check_reading(result, 4)
    assert "number" not in result and "digits" not in result
    assert result["top_k"][0] == [result["digit"], result["confidence"]]
    json.dumps(result)  # JSON-ready: plain ints, floats, lists


def test_a_number_carries_number_and_its_digits(model):
    result = predict.predict_image(model, drawn("2026", size=(700, 240)), top_k=2)
    assert len(result["number"]) == 4 and len(result["digits"]) == 4
    assert result["number"] == "".join(str(d["digit"]) for d in result["digits"])
    for d in result["digits"]:
        check_reading({**d, "low_confidence": d["confidence"] < predict.LOW_CONFIDENCE}, 2)
    assert result["digit"] == result["digits"][0]["digit"]
    assert result["confidence"] == pytest.approx(np.prod([d["confidence"] for d in result["digits"]]), abs=2e-4)


def test_predict_paths_matches_predict_image_and_keeps_going(model, tmp_path):
    good = tmp_path / "good.png"
    drawn("3").save(good)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    drawn("45", size=(400, 240)).save(tmp_path / "number.png")
    results = predict.predict_paths(model, [good, tmp_path / "bad.png", tmp_path / "number.png", tmp_path / "gone.png"])
    assert [r["path"] for r in results] == [str(good), str(tmp_path / "bad.png"),
                                            str(tmp_path / "number.png"), str(tmp_path / "gone.png")]
    assert results[1] == {"path": str(tmp_path / "bad.png"), "error": "not an image (or a format Pillow cannot read)"}
    assert "no such file" in results[3]["error"]
    for path, result in ((good, results[0]), (tmp_path / "number.png", results[2])):
        alone = predict.predict_image(model, path)
        assert {k: v for k, v in result.items() if k != "path"} == alone


def test_folders_are_walked_for_image_files_only(tmp_path):
    drawn("1").save(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub").mkdir()
    drawn("2").convert("RGB").save(tmp_path / "sub" / "b.JPG")
    assert predict.expand_paths([tmp_path]) == [tmp_path / "a.png", tmp_path / "sub" / "b.JPG"]


# --------------------------------------------------------------------------- CLI


@pytest.mark.slow
def test_cli_reports_every_hostile_input_and_predicts_the_rest(model_file, tmp_path):
    files = {}
    for name, (data, _) in HOSTILE.items():
        files[name] = tmp_path / (name.replace(" ", "-").replace(".", "") + ".png")
        files[name].write_bytes(data)
    for name, data in extra_formats().items():
        (tmp_path / name).write_bytes(data)
    paths = [str(p) for p in files.values()] + [str(tmp_path / n) for n in extra_formats()]
    done = subprocess.run([sys.executable, "-m", "digit_recognizer", "predict", "--model", str(model_file),
                           "--json", *paths], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    results = {Path(r["path"]).name: r for r in json.loads(done.stdout)}  # stdout is only the JSON
    for name, (_, message) in HOSTILE.items():
        assert message in results[files[name].name]["error"], name
    for name in extra_formats():
        check_reading(results[name])


def test_cli_human_output_csv_and_steps(model_file, tmp_path, capsys):
    drawn("5").save(tmp_path / "five.png")
    drawn("12", size=(400, 240)).save(tmp_path / "twelve.png")
    steps, table = tmp_path / "steps", tmp_path / "out.csv"
    code = cli.main(["predict", "--model", str(model_file), str(tmp_path / "five.png"), str(tmp_path / "twelve.png"),
                     "--csv", str(table), "--show-steps", str(steps), "--top-k", "2"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0].startswith(f"{tmp_path / 'five.png'}: ") and "%)" in out[0]
    rows = list(csv.DictReader(open(table)))
    assert [r["path"] for r in rows] == [str(tmp_path / "five.png"), str(tmp_path / "twelve.png")]
    assert len(rows[1]["reading"]) == 2 and len(rows[0]["top_k"].split()) == 2
    assert (steps / "five-4-digit0.png").exists() and (steps / "twelve-4-digit1.png").exists()
    # files of the same name in two folders keep their own steps
    (tmp_path / "other").mkdir()
    drawn("7").save(tmp_path / "other" / "five.png")
    assert cli.main(["predict", "--model", str(model_file), str(tmp_path / "five.png"),
                     str(tmp_path / "other" / "five.png"), "--show-steps", str(steps)]) == 0
    first, second = (Image.open(steps / name).convert("L") for name in ("five-1-gray.png", "five-2-1-gray.png"))
    assert not np.array_equal(np.asarray(first), np.asarray(second))


def test_cli_errors_are_one_line(model_file, tmp_path, capsys):
    drawn("5").save(tmp_path / "five.png")
    assert cli.main(["predict", "--model", str(model_file), "--top-k", "0", str(tmp_path / "five.png")]) == 1
    assert capsys.readouterr().err.strip() == "digits: error: --top-k must be at least 1"
    assert cli.main(["predict", "--model", str(tmp_path / "missing.safetensors"), str(tmp_path / "five.png")]) == 1
    assert capsys.readouterr().err.count("\n") == 1
    (tmp_path / "empty").mkdir()
    assert cli.main(["predict", "--model", str(model_file), str(tmp_path / "empty")]) == 1
    assert "no image files found" in capsys.readouterr().err
    assert cli.main(["predict", "--model", str(model_file), str(tmp_path / "five.png"), str(tmp_path / "x.png")]) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith(str(tmp_path / "five.png"))
    assert captured.err.strip() == f"digits: error: {tmp_path / 'x.png'}: no such file"
    (tmp_path / "taken").write_text("a file where the steps folder should go")
    args = ["predict", "--model", str(model_file), str(tmp_path / "five.png"), "--show-steps", str(tmp_path / "taken")]
    assert cli.main(args) == 1
    assert capsys.readouterr().err.startswith(f"digits: error: cannot write the steps to {tmp_path / 'taken'}")


@pytest.mark.parametrize("flag", ["--image_path", "--image-path"])
@pytest.mark.slow
def test_classic_inference_script(model_file, tmp_path, flag):
    drawn("9").save(tmp_path / "nine.png")
    done = subprocess.run([sys.executable, str(ROOT / "src" / "inference.py"), flag, str(tmp_path / "nine.png"),
                           "--model", str(model_file), "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    check_reading(json.loads(done.stdout)[0])
    missing = subprocess.run([sys.executable, str(ROOT / "src" / "inference.py"), flag, str(tmp_path / "nine.png"),
                              str(tmp_path / "gone.png"), "--model", str(model_file)],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1
    assert missing.stderr.startswith(f"python src/inference.py: error: {tmp_path / 'gone.png'}: no such file")


# --------------------------------------------------------------------------- the shipped model


@pytest.mark.slow
def test_shipped_model_reads_printed_digits_and_numbers(shipped):
    for text in "0123456789":
        assert predict.predict_image(shipped, drawn(text))["digit"] == int(text)
    assert predict.predict_image(shipped, drawn("2026", size=(700, 240)))["number"] == "2026"


def test_several_lines_are_reported_as_lines(shipped, tmp_path, capsys):
    from test_preprocess import two_lines

    result = predict.predict_image(shipped, two_lines("7", "73"))
    assert result["lines"] == ["7", "73"] and "number" not in result
    assert [d["digit"] for d in result["digits"]] == [7, 7, 3]
    two_lines("25", "8").save(tmp_path / "page.png")
    assert cli.main(["predict", str(tmp_path / "page.png")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{tmp_path / 'page.png'}: 2 lines (") and out[1:] == ["  25", "  8"]
    assert cli.main(["predict", "--json", str(tmp_path / "page.png")]) == 0
    (reading,) = json.loads(capsys.readouterr().out)
    assert reading["lines"] == ["25", "8"]


@pytest.mark.slow
def test_shipped_model_on_realistic_images(shipped, mnist_test, tmp_path):
    sys.path.insert(0, str(ROOT / "tests" / "realworld"))
    import generate

    images, labels = mnist_test
    labels_csv = generate.generate(tmp_path, images, labels, per_category=10, seed=123,
                                   categories=generate.SINGLE + generate.NUMBERS)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import realworld

    score = realworld.evaluate(shipped, labels_csv)
    singles = sum(score[c][0] for c in generate.SINGLE) / sum(score[c][1] for c in generate.SINGLE)
    numbers = sum(score[c][0] for c in generate.NUMBERS) / sum(score[c][1] for c in generate.NUMBERS)
    assert singles >= 0.93 and numbers >= 0.85, realworld.table(score)


def test_json_output_is_one_line_per_input(model_file, tmp_path, capsys):
    drawn("5").save(tmp_path / "five.png")
    drawn("12", size=(400, 240)).save(tmp_path / "twelve.png")
    assert cli.main(["predict", "--model", str(model_file), "--json", "--top-k", "2",
                     str(tmp_path / "five.png"), str(tmp_path / "twelve.png")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "[" and lines[-1] == "]" and len(lines) == 4  # a top-k pair stays on its line
    results = json.loads("\n".join(lines))
    assert [Path(r["path"]).name for r in results] == ["five.png", "twelve.png"]


def test_a_model_of_named_classes_reports_names(tmp_path, capsys):
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    nn.manual_seed(0)
    meta = {"spec": SPEC, "mean": 0.29, "std": 0.35, "classes": names, "dataset": "fashion-mnist"}
    path = modelfile.save(tmp_path / "fashion.safetensors", models.build(SPEC), meta)
    drawn("5").save(tmp_path / "five.png")
    assert cli.main(["predict", "--model", str(path), "--json", str(tmp_path / "five.png")]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["class"] == names[result["digit"]]
    assert all(name in names for name, _ in result["top_k"]) and result["top_k"][0][0] == result["class"]
    assert cli.main(["predict", "--model", str(path), str(tmp_path / "five.png")]) == 0
    assert capsys.readouterr().out.startswith(f"{tmp_path / 'five.png'}: {result['class']} (")
