"""The run artifacts: files written, metrics.json round-trip, report.html self-contained."""

import base64
import json
from html.parser import HTMLParser

import numpy as np
import pytest

from digit_recognizer import evaluation, plotting, report

DIGITS = [str(d) for d in range(10)]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class FakeModel:
    """Predicts (top-left pixel) mod 10; carries metadata like a loaded model file."""

    classes = DIGITS
    metadata = {"dataset": "mnist", "command": "digits train --epochs 2", "version": "1.0.0",
                "mean": 0.1307, "std": 0.3081}

    def predict_proba(self, images):
        pred = np.rint(images[:, 0, 0] * 255).astype(int) % 10
        proba = np.full((len(images), 10), 0.02, np.float32)
        proba[np.arange(len(images)), pred] = 0.82
        return proba


class ResourceCollector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls = []  # (tag, attribute, value)
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in {"src", "href", "srcset", "data", "poster", "action"}:
                self.urls.append((tag, name, value or ""))


HISTORY = [
    {"epoch": e, "loss": 1.0 / e, "accuracy": 1 - 0.1 / e, "val_loss": 1.2 / e,
     "val_accuracy": 1 - 0.15 / e, "lr": 1e-3 / e, "seconds": 2.5}
    for e in range(1, 5)
]


@pytest.fixture(scope="module")
def evaluated():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(200, 28, 28), dtype=np.uint8)
    labels = (images[:, 0, 0] % 10).astype(np.uint8)
    labels[:30] = (labels[:30] + 3) % 10  # 30 mistakes
    model = FakeModel()
    return model, images, labels, evaluation.evaluate(model, images, labels)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, evaluated):
    """One report written with history and settings, shared by the tests that read it."""
    model, images, labels, metrics = evaluated
    folder = tmp_path_factory.mktemp("run")
    (folder / "config.json").write_text(json.dumps({"epochs": 4, "optimizer": {"name": "adam", "lr": 0.001},
                                                    "note": "<script>alert(1)</script>"}))
    written = report.write_run_artifacts(folder, HISTORY, metrics, images, labels, model)
    return folder, written


@pytest.mark.slow
def test_writes_every_artifact(run_dir, evaluated):
    folder, written = run_dir
    metrics = evaluated[3]
    for name in ("curves.png", "confusion_matrix.png", "misclassified.png", "metrics.json", "report.html"):
        assert (folder / name).is_file() and (folder / name).stat().st_size > 0, name
    for name in ("curves.png", "confusion_matrix.png", "misclassified.png"):
        assert (folder / name).read_bytes().startswith(PNG_MAGIC)
    assert set(written.values()) <= set(folder.iterdir())
    assert json.loads((folder / "metrics.json").read_text()) == metrics
    assert not list(folder.glob(".*.tmp"))  # atomic writes leave no temporaries

    page = (folder / "report.html").read_text()
    assert "85.00%" in page  # 170 of 200 right
    assert "optimizer.name" in page and "adam" in page  # nested settings flattened
    assert "<script>" not in page and "&lt;script&gt;" in page  # settings are escaped
    assert "digits train --epochs 2" in page


@pytest.mark.slow
def test_report_html_is_self_contained(run_dir):
    page = (run_dir[0] / "report.html").read_text()
    parser = ResourceCollector()
    parser.feed(page)

    assert "link" not in parser.tags and "script" not in parser.tags and "iframe" not in parser.tags
    images_embedded = [value for tag, name, value in parser.urls if tag == "img"]
    assert len(images_embedded) == 5  # curves, reliability diagram, two confusion matrices, misclassified grid
    for tag, name, value in parser.urls:
        assert value.startswith("data:image/png;base64,"), (tag, name, value[:60])
        assert base64.b64decode(value.split(",", 1)[1]).startswith(PNG_MAGIC)
    lowered = page.lower()
    assert "http://" not in lowered and "https://" not in lowered and "url(" not in lowered
    assert "@import" not in lowered


@pytest.mark.slow
def test_perfect_model_without_history(tmp_path):
    images = np.zeros((10, 28, 28), np.uint8)
    images[:, 0, 0] = np.arange(10)
    labels = np.arange(10)
    metrics = evaluation.evaluate(FakeModel(), images, labels)
    written = report.write_run_artifacts(tmp_path, [], metrics, images, labels, FakeModel())
    assert "curves" not in written and not (tmp_path / "curves.png").exists()
    assert (tmp_path / "misclassified.png").read_bytes().startswith(PNG_MAGIC)
    page = (tmp_path / "report.html").read_text()
    assert "0 test images are misclassified" in page and "Training curves" not in page


def test_mismatched_images_are_refused(tmp_path, evaluated):
    model, images, labels, metrics = evaluated
    with pytest.raises(ValueError, match="metrics cover"):
        report.write_run_artifacts(tmp_path, HISTORY, metrics, images[:10], labels[:10], model)


def test_read_history_parses_csv(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss,accuracy,val_loss,val_accuracy,lr,seconds\n1,0.5,0.8,0.6,0.79,0.001,3.2\n"
                    "2,0.3,0.9,,,0.0005,3.1\n")
    rows = report.read_history(path)
    assert rows[0] == {"epoch": 1, "loss": 0.5, "accuracy": 0.8, "val_loss": 0.6, "val_accuracy": 0.79,
                       "lr": 0.001, "seconds": 3.2}
    assert rows[1]["val_loss"] is None
    assert report.read_history(tmp_path / "missing.csv") == []
    plotting.plot_curves(rows)  # missing validation values are tolerated


def test_architecture_rows_give_shapes_and_parameter_counts():
    from digit_recognizer import nn

    net = nn.Sequential(nn.Conv2D(1, 4, 3, padding=1), nn.BatchNorm2D(4), nn.ReLU(), nn.MaxPool2D(2),
                        nn.Flatten(), nn.Dense(4 * 14 * 14, 10))
    rows = report.architecture_rows(net)
    assert [r["type"] for r in rows] == ["Conv2D", "BatchNorm2D", "ReLU", "MaxPool2D", "Flatten", "Dense"]
    assert [r["output_shape"] for r in rows] == [("N", 4, 28, 28)] * 3 + [("N", 4, 14, 14), ("N", 784), ("N", 10)]
    assert [r["parameters"] for r in rows] == [4 * 9 + 4, 8, 0, 0, 0, 784 * 10 + 10]
    assert rows[0]["config"]["out_channels"] == 4
    html_page = report.render_html(evaluation.metrics_from_predictions([0, 1], np.eye(10)[:2], DIGITS),
                                   model=type("M", (), {"net": net, "metadata": {}})())
    assert "7,898 trainable parameters in 6 layers" in html_page


@pytest.mark.slow
def test_training_report_leads_with_its_curves_and_folds_the_settings(tmp_path, evaluated):
    model, images, labels, metrics = evaluated
    settings = {"epochs": 4, "augment": False, "augmentation": {"rotation": 10.0, "shift": 2.0}}
    (tmp_path / "config.json").write_text(json.dumps({"settings": settings, "classes": DIGITS, "mean": 0.13,
                                                      "command": "digits train", "seed": 0}))
    report.write_run_artifacts(tmp_path, HISTORY, metrics, images, labels, model, title="Training report")
    page = (tmp_path / "report.html").read_text()
    assert "<h1>Training report</h1>" in page and "Evaluation report" not in page
    assert page.index("Training curves") < page.index("Per-class results") < page.index("Training settings")
    assert "<details><summary><strong>Training settings</strong> (3)</summary>" in page  # epochs, augment, seed
    assert "augmentation.rotation" not in page  # augmentation was off
    settings["augment"] = True
    (tmp_path / "config.json").write_text(json.dumps({"settings": settings}))
    report.write_run_artifacts(tmp_path, HISTORY, metrics, images, labels, model)
    page = (tmp_path / "report.html").read_text()
    assert "<h1>Evaluation report</h1>" in page and "settings.augmentation.rotation" in page
