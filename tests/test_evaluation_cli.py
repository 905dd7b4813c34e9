"""`digits evaluate`: JSON shape, human table, report folder, clean errors (real MNIST test split)."""

import json

import numpy as np
import pytest

from digit_recognizer import cli, models, modelfile, nn

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """An untrained MLP saved as a model file: fast, and its accuracy is whatever it is."""
    nn.manual_seed(0)
    spec = models.resolve(models.get_spec("mlp")[1])
    path = tmp_path_factory.mktemp("model") / "mlp.safetensors"
    modelfile.save(path, models.build(spec), {"spec": spec, "mean": 0.1307, "std": 0.3081, "name": "test-mlp",
                                              "classes": [str(d) for d in range(10)], "dataset": "mnist"})
    return path


def run(capsys, *argv):
    code = cli.main(["evaluate", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_json_is_one_document_with_the_contract_fields(capsys, model_path, mnist_data_dir, mnist_test):
    code, out, _ = run(capsys, model_path, "--json", "--data-dir", mnist_data_dir, "--batch-size", 777)
    assert code == 0
    result = json.loads(out)  # the whole of stdout is one JSON document
    images, labels = mnist_test
    predicted = modelfile.load(model_path).predict(images)

    assert result["n"] == len(labels) == 10_000
    assert result["accuracy"] == pytest.approx(np.mean(predicted == labels))
    assert [row["digit"] for row in result["per_class"]] == list(range(10))
    assert set(result["per_class"][0]) == {"digit", "class", "precision", "recall", "f1", "support"}
    assert [row["support"] for row in result["per_class"]] == np.bincount(labels, minlength=10).tolist()
    cm = np.array(result["confusion_matrix"])
    assert cm.shape == (10, 10) and cm.sum() == 10_000 and np.trace(cm) == np.sum(predicted == labels)
    assert (result["dataset"], result["split"], result["model"]) == ("mnist", "test", str(model_path))
    assert len(result["misclassified"]) == 10_000 - np.trace(cm)


@pytest.mark.slow
def test_human_output_and_report_folder(capsys, model_path, mnist_data_dir, tmp_path):
    out_dir = tmp_path / "eval"
    code, out, _ = run(capsys, model_path, "--data-dir", mnist_data_dir, "--out", out_dir)
    assert code == 0
    assert "accuracy" in out and "precision" in out and "confusion matrix" in out
    assert f"report: {out_dir / 'report.html'}" in out
    for name in ("confusion_matrix.png", "misclassified.png"):
        assert (out_dir / name).read_bytes().startswith(PNG_MAGIC)
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["n"] == 10_000 and metrics["dataset"] == "mnist"
    assert "data:image/png;base64," in (out_dir / "report.html").read_text()


@pytest.mark.slow
def test_default_model_is_the_shipped_one(capsys, model_path, mnist_data_dir, monkeypatch):
    monkeypatch.setattr(modelfile, "default_model_path", lambda: model_path)
    code, out, _ = run(capsys, "--json", "--data-dir", mnist_data_dir)
    assert code == 0 and json.loads(out)["model"] == str(model_path)


@pytest.mark.parametrize("argv, message", [
    (["{missing}"], "no such model file"),
    (["{model}", "--dataset", "fashion-mnist"], "pick the matching --dataset"),
    (["{model}", "--batch-size", "0"], "--batch-size"),
])
def test_user_mistakes_are_one_line_errors(capsys, model_path, tmp_path, argv, message):
    argv = [a.format(missing=tmp_path / "nope.safetensors", model=model_path) for a in argv]
    code, out, err = run(capsys, *argv)
    assert code == 1 and out == ""
    assert err.startswith("digits: error:") and message in err and err.count("\n") == 1


@pytest.mark.slow
def test_unwritable_out_dir_is_a_clean_error(capsys, model_path, mnist_data_dir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, _, err = run(capsys, model_path, "--data-dir", mnist_data_dir, "--out", blocker)
    assert code == 1 and "cannot write the report" in err
