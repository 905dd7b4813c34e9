"""Result tables of a bulk read: one row per input, as Parquet, CSV or JSON Lines.

A row holds the columns of ``ROW_COLUMNS``, taken from a ``digits predict --json``
object; absent keys are nulls (an unreadable input has only ``path`` and
``error``)::

    path            str        the input, as ``digits predict`` names it
    digit           int        the digit read (a number's first)
    number          str        all digits of a number, left to right
    lines           list[str]  the numbers of several lines, top to bottom
    confidence      float
    low_confidence  bool
    top_k           [[digit, probability], ...]   Parquet: list of {digit, probability}
    error           str        why the input could not be read

CSV holds ``lines`` and ``top_k`` as JSON text. A table is written to a hidden
file beside its target and renamed over it when closed, so a run that dies leaves
the previous table whole; ``digits predict --cluster ray --resume`` reads it back.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from digit_recognizer.errors import DigitsError

ROW_COLUMNS = ("path", "digit", "number", "lines", "confidence", "low_confidence", "top_k", "error")
FORMATS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl"}


def table_format(path) -> str:
    """'parquet', 'csv' or 'jsonl', from the file name; a clear error for anything else."""
    kind = FORMATS.get(Path(path).suffix.lower())
    if kind is None:
        raise DigitsError(f"--out {path}: name a .parquet, .csv or .jsonl file")
    return kind


def to_row(result: dict) -> dict:
    """The row of one ``predict_paths`` result."""
    return {column: result.get(column) for column in ROW_COLUMNS}


def _parquet_schema():
    import pyarrow as pa

    return pa.schema([
        ("path", pa.string()), ("digit", pa.int64()), ("number", pa.string()),
        ("lines", pa.list_(pa.string())), ("confidence", pa.float64()), ("low_confidence", pa.bool_()),
        ("top_k", pa.list_(pa.struct([("digit", pa.int64()), ("probability", pa.float64())]))),
        ("error", pa.string()),
    ])


class RowWriter:
    """Write rows to ``path`` (format from its suffix), atomically: ``close()`` renames the
    finished table into place. Use as a context manager; it closes even on an exception,
    keeping the rows written so far (valid rows, for a later ``--resume``)."""

    def __init__(self, path):
        self.path = Path(path)
        self.kind = table_format(self.path)
        self.partial = self.path.with_name(f".{self.path.name}.partial-{os.getpid()}")
        self.rows = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.kind == "parquet":
                import pyarrow.parquet as pq

                self._schema = _parquet_schema()
                self._file = pq.ParquetWriter(self.partial, self._schema)
            else:
                self._file = open(self.partial, "w", newline="" if self.kind == "csv" else None)
                if self.kind == "csv":
                    self._csv = csv.writer(self._file)
                    self._csv.writerow(ROW_COLUMNS)
        except OSError as error:
            raise DigitsError(f"cannot write {self.path}: {error.strerror or error}") from None

    def write(self, rows: list[dict]) -> None:
        if not rows:
            return
        if self.kind == "parquet":
            import pyarrow as pa

            arrow_rows = [{**row, "top_k": _top_k_structs(row["top_k"])} for row in rows]
            self._file.write_table(pa.Table.from_pylist(arrow_rows, schema=self._schema))
        elif self.kind == "csv":
            for row in rows:
                self._csv.writerow(["" if row[c] is None else json.dumps(row[c]) if c in ("lines", "top_k")
                                    else row[c] for c in ROW_COLUMNS])
        else:
            self._file.writelines(json.dumps(row) + "\n" for row in rows)
        self.rows += len(rows)

    def close(self) -> None:
        self._file.close()
        os.replace(self.partial, self.path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _top_k_structs(top_k):
    return None if top_k is None else [{"digit": int(d), "probability": float(p)} for d, p in top_k]


def read_rows(path) -> list[dict]:
    """The rows of a table written by ``RowWriter``, as ``to_row`` made them."""
    path, kind = Path(path), table_format(path)
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            rows = pq.read_table(path).to_pylist()
            for row in rows:
                if row["top_k"] is not None:
                    row["top_k"] = [[entry["digit"], entry["probability"]] for entry in row["top_k"]]
            return rows
        with open(path, newline="" if kind == "csv" else None) as f:
            if kind == "jsonl":
                return [json.loads(line) for line in f if line.strip()]
            return [_from_csv(record) for record in csv.DictReader(f)]
    except OSError as error:
        raise DigitsError(f"cannot read {path}: {error.strerror or error}") from None
    except Exception as error:  # noqa: BLE001  a damaged table: pyarrow, json and csv raise their own kinds
        raise DigitsError(f"cannot read {path} as a {kind} table of results: {error}") from None


def _from_csv(record: dict) -> dict:
    def value(column, text):
        if text == "":
            return None
        if column in ("lines", "top_k"):
            return json.loads(text)
        if column == "digit":
            return int(text)
        if column == "confidence":
            return float(text)
        if column == "low_confidence":
            return text == "True"
        return text

    missing = set(ROW_COLUMNS) - set(record)
    if missing:
        raise ValueError(f"no column {sorted(missing)[0]!r}")
    return {column: value(column, record[column]) for column in ROW_COLUMNS}
