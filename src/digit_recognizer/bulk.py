"""Bulk reading on Ray Data: ``digits predict DIR_OR_GLOB --cluster ray --out FILE``.

The driver (this process) lists the inputs and writes the table; Ray Data streams
the file names, ``batch_size`` at a time, through a pool of actors. Each actor
loads the model once and calls ``predict.predict_paths``, the function behind
``digits predict``, on its batch: the same preprocessing, one forward pass for the
batch, the same answers. Actors read the files themselves, so on a cluster every
node must see the inputs at the same paths (a shared file system).

With no address, a local Ray starts with this machine's cores (the ones this
process may use); ``address`` or ``$RAY_ADDRESS`` joins an existing cluster
(``"auto"``: the one started on this machine with ``ray start``).
"""

from __future__ import annotations

import glob
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from digit_recognizer import extras, predict, rowfiles
from digit_recognizer.errors import DigitsError

BATCH_SIZE = 64  # files per actor call: one forward pass each; small enough for a smooth progress bar


@dataclass
class Summary:
    """What a bulk read did."""

    files: int  # inputs found
    skipped: int  # already in the table (--resume)
    read: int  # rows written by this run
    errors: int  # of those, inputs that could not be read
    seconds: float  # from the first batch handed to Ray to the last row written
    startup_seconds: float  # starting (or joining) Ray
    workers: int
    driver_cpu_seconds: float  # CPU time of this process while reading (listing, writing, the bar)

    @property
    def rate(self) -> float:
        return self.read / self.seconds if self.seconds > 0 else 0.0


def list_inputs(patterns) -> tuple[list[Path], list[dict]]:
    """Image files in named folders (recursively), files matching glob patterns, and files
    named directly, each pattern's in sorted order, as ``digits predict`` lists them; and an
    error result for each folder that could not be read."""
    paths = []
    for pattern in map(str, patterns):
        if not os.path.exists(pattern) and glob.has_magic(pattern):
            paths += sorted(Path(p) for p in glob.glob(pattern, recursive=True))
        else:
            paths.append(Path(pattern))
    return predict._expand(paths)  # noqa: SLF001  (digits predict's own listing, errors included)


def local_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class _Reader:
    """A Ray actor: one model, loaded once, reads batches of files."""

    def __init__(self, model: list, top_k: int, deskew: bool):
        import ray

        from digit_recognizer import modelfile, nn

        nn.threads(1)  # Ray gives each actor one CPU: more threads (the engine's, BLAS's) would contend
        with tempfile.TemporaryDirectory() as folder:  # the model file as the driver read it
            path = Path(folder) / "model.safetensors"
            path.write_bytes(ray.get(model[0]))
            self.model = modelfile.load(path)
        self.top_k, self.deskew = top_k, deskew

    def __call__(self, batch: dict) -> dict:
        import json

        import numpy as np

        paths = [str(p) for p in batch["path"]]
        results = predict.predict_paths(self.model, paths, self.top_k, deskew=self.deskew,
                                        batch_size=len(paths))
        # JSON text per row: nested, ragged values cross Ray's Arrow blocks untouched.
        return {"row": np.array([json.dumps(rowfiles.to_row(r)) for r in results], dtype=object)}


def _start_ray(address: str | None, workers: int | None):
    """Join the cluster at ``address`` (or $RAY_ADDRESS), or start a local Ray; returns
    (ray, whether this call started it)."""
    try:
        import ray
        import ray.data  # noqa: F401  (Ray without its data library: the same missing extra)
    except ImportError as error:
        raise DigitsError(f"--cluster ray needs the cluster extra ({error.name} is missing): "
                          f"{extras.install_command('cluster')}") from None
    if ray.is_initialized():  # a program that started Ray itself
        return ray, False
    address = address or os.environ.get("RAY_ADDRESS") or None
    # Ray's C++ core logs notes meant for its developers on stderr (e.g. on actors with large
    # constructor arguments); its logs on disk keep them all. Real failures still raise here.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    options = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                   configure_logging=True)
    try:
        if address:
            ray.init(address=address, **options)
        else:
            # Ray's own processes (its store, scheduler) are light: the CPUs go to the actors.
            ray.init(num_cpus=max(workers or 0, local_cores()), object_store_memory=256 * 2**20, **options)
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise DigitsError(f"cannot start {where}: {str(error).splitlines()[0] if str(error) else error}") from None
    return ray, True


def run(inputs, out, *, model_path=None, address: str | None = None, workers: int | None = None,
        resume: bool = False, top_k: int = 3, deskew: bool = False, batch_size: int = BATCH_SIZE,
        progress: bool = True) -> Summary:
    """Read every input on Ray and write one row per input to ``out`` (see ``rowfiles``).

    ``workers``: actors (default: every CPU of the Ray cluster). ``resume``: keep the rows
    already in ``out`` and read only the inputs it lacks; without it an existing ``out`` is
    refused rather than overwritten.
    """
    from digit_recognizer import modelfile

    rowfiles.table_format(out)
    if workers is not None and workers < 1:
        raise DigitsError("--workers must be at least 1 with --cluster ray")
    files, unreadable = list_inputs(inputs)
    if not files and not unreadable:
        raise DigitsError("no image files found in " + ", ".join(map(str, inputs)))
    out = Path(out)
    kept = []
    if out.exists():
        if not resume:
            raise DigitsError(f"{out} exists: add --resume to read only the inputs it lacks, or remove it")
        kept = rowfiles.read_rows(out)
    done = {row["path"] for row in kept}
    todo = [str(path) for path in files if str(path) not in done]
    unreadable = [rowfiles.to_row(result) for result in unreadable if result["path"] not in done]

    model_file = Path(model_path) if model_path else modelfile.default_model_path()
    modelfile.load(model_path)  # a bad model file is one clear error here, before Ray starts
    model_bytes = model_file.read_bytes()

    started = time.perf_counter()
    ray, owned = _start_ray(address, workers) if todo else (None, False)
    startup = time.perf_counter() - started
    begun, cpu, errors = time.perf_counter(), time.process_time(), 0
    try:
        with rowfiles.RowWriter(out) as writer:
            writer.write(kept)
            if todo:
                workers = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
                errors = _read_on_ray(ray, todo, writer, model_bytes, top_k, deskew, batch_size,
                                      workers, progress)
            writer.write(unreadable)  # last, as digits predict lists them
    finally:
        if owned:
            ray.shutdown()
    return Summary(files=len(files) + len(unreadable), skipped=len(files) - len(todo),
                   read=len(todo) + len(unreadable), errors=errors + len(unreadable),
                   seconds=time.perf_counter() - begun, startup_seconds=startup, workers=workers or 0,
                   driver_cpu_seconds=time.process_time() - cpu)


def _read_on_ray(ray, todo, writer, model_bytes, top_k, deskew, batch_size, workers, progress) -> int:
    """Stream ``todo`` through ``workers`` actors into ``writer``; returns the number of error rows."""
    import json

    from tqdm import tqdm

    logging.getLogger("ray.data").setLevel(logging.ERROR)  # notes on its own progress and tuning
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # ours below counts files, not blocks
    context.execution_options.preserve_order = True  # the table lists inputs in the order given

    # A short list is shared out so that every actor gets some of it.
    batch_size = max(1, min(batch_size, -(-len(todo) // workers)))
    dataset = ray.data.from_items([{"path": path} for path in todo],
                                  override_num_blocks=min(-(-len(todo) // batch_size), 10_000))
    # The model travels once, through the object store; each actor fetches it when it starts.
    model = [ray.put(model_bytes)]  # in a list: Ray passes the reference, not the bytes
    rows = dataset.map_batches(
        _Reader, fn_constructor_kwargs={"model": model, "top_k": top_k, "deskew": deskew},
        batch_size=batch_size, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=1,
    )
    errors = 0
    with tqdm(total=len(todo), unit="file", desc="reading", file=sys.stderr, disable=not progress,
              dynamic_ncols=True) as bar:
        for batch in rows.iter_batches(batch_size=None, batch_format="numpy"):
            written = [json.loads(text) for text in batch["row"]]
            writer.write(written)
            errors += sum(predict.failed(row["error"]) for row in written)
            bar.update(len(written))
    return errors
