"""IDX reading and writing, and every way a bad data file is refused (library and CLI)."""

import gzip
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from digit_recognizer import data
from digit_recognizer.cli import main
from digit_recognizer.data import read_idx, write_idx
from digit_recognizer.errors import DigitsError

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


@settings(max_examples=40, deadline=None)
@given(array=hnp.arrays(st.sampled_from(DTYPES), hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5)),
       compressed=st.booleans())
def test_round_trip_any_dtype_and_shape(tmp_path_factory, array, compressed):
    path = tmp_path_factory.mktemp("idx") / ("a.idx.gz" if compressed else "a.idx")
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)  # NaNs compare equal here


def test_file_layout_is_big_endian_idx(tmp_path):
    path = write_idx(tmp_path / "x", np.array([[1, 2, 3], [4, 5, 258]], dtype=np.int16))
    raw = path.read_bytes()
    assert raw[:4] == b"\x00\x00\x0b\x02"                       # zero, int16 code, 2 dims
    assert raw[4:12] == b"\x00\x00\x00\x02\x00\x00\x00\x03"      # sizes 2, 3
    assert raw[12:] == b"\x00\x01\x00\x02\x00\x03\x00\x04\x00\x05\x01\x02"


def test_gzip_is_detected_by_content(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    gz = write_idx(tmp_path / "labels.gz", labels)
    plain_name = tmp_path / "labels-without-suffix"
    plain_name.write_bytes(gz.read_bytes())
    np.testing.assert_array_equal(read_idx(plain_name), labels)


def test_uint8_stays_uint8(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    back = read_idx(write_idx(tmp_path / "images", images))
    assert back.dtype == np.uint8 and back.flags.writeable


def test_writer_refuses_unsupported_dtype(tmp_path):
    with pytest.raises(ValueError, match="dtype"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.uint16))


def _labels_bytes(n=10):
    return b"\x00\x00\x08\x01" + n.to_bytes(4, "big") + bytes(i % 256 for i in range(n))


@pytest.mark.parametrize("content, message", [
    (b"\x08\x03\x00\x00" + bytes(20), "not an IDX file"),                  # wrong magic
    (b"\x00\x00\x07\x01" + bytes(20), "not an IDX file"),                  # unknown dtype code
    (b"\x00\x00\x08", "truncated IDX file"),                               # no header
    (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated IDX file"),           # dims end early
    (_labels_bytes()[:-3], "truncated IDX file"),                          # data ends early
    (_labels_bytes() + b"\x00", "longer than its header says"),            # trailing bytes
])
def test_malformed_files_are_refused(tmp_path, content, message):
    path = tmp_path / "bad"
    path.write_bytes(content)
    with pytest.raises(DigitsError, match=message):
        read_idx(path)


def test_gz_name_that_is_not_gzip_is_refused(tmp_path):
    path = tmp_path / "labels.gz"
    path.write_bytes(_labels_bytes())
    with pytest.raises(DigitsError, match="not a gzip file"):
        read_idx(path)


def test_truncated_gzip_is_refused(tmp_path):
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(_labels_bytes(1000))[:-30])
    with pytest.raises(DigitsError, match="corrupt gzip"):
        read_idx(path)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(DigitsError, match="no such file"):
        read_idx(tmp_path / "nothing")


# --- the same refusals through the `digits` command: one line on stderr, exit 1, no traceback --

def _cli_error(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("digits: error: ")]
    assert len(errors) == 1, err
    return errors[0]


def _break(target, how):
    def edit(name, raw):
        return how(raw) if name == target else raw
    return edit


@pytest.mark.parametrize("edit, message", [
    (_break("train-images-idx3-ubyte", lambda raw: b"\x00\x01" + raw[2:]), "not an IDX file"),
    (_break("train-images-idx3-ubyte", lambda raw: raw[:-100]), "truncated IDX file"),
    (_break("train-labels-idx1-ubyte", lambda raw: b"\x00\x00\x08\x01\x00\x00\x00\x1d" + raw[8:-1]),
     "30 images but 29 labels"),
], ids=["wrong-magic", "truncated", "length-mismatch"])
def test_cli_refuses_malformed_data(tiny_dataset, tmp_path, monkeypatch, capsys, edit, message):
    dataset, source = tiny_dataset(edit=edit)   # checksums match the broken files: the reader must catch them
    monkeypatch.setitem(data.DATASETS, "tiny", dataset)
    cache = tmp_path / "cache"
    assert main(["data", "fetch", "--dataset", "tiny", "--data-dir", str(cache), "--from", str(source), "-q"]) == 0
    assert message in _cli_error(capsys, ["data", "info", "--dataset", "tiny", "--data-dir", str(cache)])


def test_cli_refuses_checksum_mismatch(tiny_dataset, tmp_path, monkeypatch, capsys):
    dataset, source = tiny_dataset()
    monkeypatch.setitem(data.DATASETS, "tiny", dataset)
    raw = bytearray((source / "t10k-images-idx3-ubyte").read_bytes())
    raw[500] ^= 0xFF
    (source / "t10k-images-idx3-ubyte").write_bytes(raw)
    cache = tmp_path / "cache"
    line = _cli_error(capsys, ["data", "fetch", "--dataset", "tiny", "--data-dir", str(cache), "--from", str(source)])
    assert "t10k-images-idx3-ubyte: checksum mismatch" in line
    assert not (cache / "tiny" / "t10k-images-idx3-ubyte").exists()
    assert not [p for p in (cache / "tiny").iterdir() if p.name.startswith(".")]   # no temporary left


def test_cli_refuses_gz_that_is_not_gzip(tiny_dataset, tmp_path, monkeypatch, capsys):
    dataset, source = tiny_dataset()
    monkeypatch.setitem(data.DATASETS, "tiny", dataset)
    (source / "train-labels-idx1-ubyte").rename(source / "train-labels-idx1-ubyte.gz")
    line = _cli_error(capsys, ["data", "fetch", "--dataset", "tiny", "--data-dir", str(tmp_path / "c"),
                               "--from", str(source)])
    assert "train-labels-idx1-ubyte.gz: not a gzip file" in line


@pytest.mark.slow
def test_installed_command_prints_no_traceback(tmp_path):
    """The real console entry point, in a fresh process: a folder without the files."""
    result = subprocess.run([sys.executable, "-m", "digit_recognizer", "data", "fetch", "--data-dir",
                             str(tmp_path / "cache"), "--from", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"digits: error: {tmp_path}: has neither train-images-idx3-ubyte nor train-images-idx3-ubyte.gz"]
    assert result.stdout == ""


@pytest.mark.parametrize("rows, cols", [(0, 5), (30, 30)])
def test_cli_show_refuses_a_bad_grid(capsys, rows, cols):
    line = _cli_error(capsys, ["data", "show", "--rows", str(rows), "--cols", str(cols)])
    assert "--rows and --cols" in line
