"""What every benchmark records beside its figures: the machine, the BLAS kernel, the command.

Each benchmark takes ``--json PATH`` and writes one document through :func:`write_json`::

    {"benchmark": "engine", "date": "2026-12-03", "command": "python benchmarks/engine.py --threads 2",
     "machine": {"cpu": ..., "cores": 2, "memory_gib": 23.4, "python": "3.11.7", "numpy": "2.3.1"},
     "blas": "openblas 0.3.29 Haswell, 2 threads",
     "columns": ["net", "train ratio", ...], "rows": [["mlp", 2.03, ...], ...],
     "notes": "one line on how to read the table"}

``benchmarks/publish.py`` turns the documents in ``benchmarks/results/`` into
``docs/performance.md``, so the figures in the docs are never typed by hand.
"""

import datetime
import json
import os
import platform
import shlex
import sys
from pathlib import Path


def cpu_name():
    """The processor's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_description():
    """The BLAS that NumPy runs, e.g. 'openblas 0.3.29 Haswell, 2 threads'."""
    try:
        import threadpoolctl
    except ImportError:
        return "unknown"
    for info in threadpoolctl.threadpool_info():
        if info.get("user_api") == "blas":
            return (f"{info.get('internal_api')} {info.get('version')} {info.get('architecture')}, "
                    f"{info.get('num_threads')} threads")
    return "unknown"


def machine_info():
    """A dict describing this machine and the software that ran the benchmark."""
    import numpy as np

    memory_gib = None
    try:
        memory_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "memory_gib": memory_gib,
            "python": platform.python_version(), "numpy": np.__version__,
            "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE")}


def write_json(path, benchmark, columns, rows, notes="", argv=None):
    """Write one benchmark's table with the machine, BLAS kernel, date and command that made it."""
    argv = sys.argv if argv is None else argv
    document = {
        "benchmark": benchmark,
        "date": datetime.date.today().isoformat(),
        "command": "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(argv[0])] + list(argv[1:])),
        "machine": machine_info(),
        "blas": blas_description(),
        "columns": list(columns),
        "rows": [list(row) for row in rows],
        "notes": notes,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    return document
