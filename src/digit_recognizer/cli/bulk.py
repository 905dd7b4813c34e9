"""`digits predict DIR_OR_GLOB... --cluster ray --out FILE [--address ADDR] [--workers N] [--resume]`.

The options of ``digits predict`` that send a bulk read to Ray (``bulk.run``);
without ``--cluster`` the command reads in this process, as always.
"""

from __future__ import annotations

import sys

from digit_recognizer.errors import DigitsError

CLUSTER_ONLY = ("out", "address", "workers", "resume")
LOCAL_ONLY = ("json", "csv", "show_steps")


def add_arguments(parser) -> None:
    group = parser.add_argument_group(
        "bulk reading on Ray (the cluster extra)",
        "PATH may also be a quoted glob ('scans/**/*.png'). One row per input goes to --out; "
        "an unreadable input is a row with its error.")
    group.add_argument("--cluster", choices=["ray"], help="read the inputs on Ray Data, in a pool of actors")
    group.add_argument("--out", metavar="FILE", help="the results table: FILE.parquet, FILE.csv or FILE.jsonl")
    group.add_argument("--address", metavar="ADDR",
                       help="join the Ray cluster at ADDR ('auto': the one `ray start` began here); default: "
                            "$RAY_ADDRESS, else a local Ray on this machine's cores")
    group.add_argument("--workers", type=int, metavar="N",
                       help="actors, each with its own copy of the model (default: every CPU of the cluster)")
    group.add_argument("--resume", action="store_true", help="keep the rows already in --out and read only "
                                                             "the inputs it lacks")


def wanted(args) -> bool:
    """Whether the command line asks for a bulk read; a clear error for mixed-up options."""
    if getattr(args, "cluster", None) is None:  # (src/inference.py's parser has none of these)
        given = [name for name in CLUSTER_ONLY if getattr(args, name, None)]
        if given:
            raise DigitsError(f"--{given[0].replace('_', '-')} goes with --cluster ray")
        return False
    mixed = [name for name in LOCAL_ONLY if getattr(args, name, None)]
    if mixed:
        raise DigitsError(f"--{mixed[0].replace('_', '-')} does not go with --cluster ray: "
                          "the results go to --out")
    if not args.out:
        raise DigitsError("--cluster ray needs --out FILE.parquet, FILE.csv or FILE.jsonl")
    return True


def run(args, prog: str = "digits") -> int:
    from digit_recognizer import bulk

    summary = bulk.run(args.paths, args.out, model_path=args.model, address=args.address, workers=args.workers,
                       resume=args.resume, top_k=args.top_k, deskew=args.deskew)
    skipped = f", {summary.skipped} already in it" if summary.skipped else ""
    unreadable = f"; {summary.errors} could not be read (their rows say why)" if summary.errors else ""
    print(f"{prog}: {summary.read} files read in {summary.seconds:.1f} s ({summary.rate:.0f} files/s) "
          f"on {summary.workers} Ray workers, after {summary.startup_seconds:.1f} s starting Ray "
          f"(driver CPU {summary.driver_cpu_seconds:.1f} s); "
          f"written to {args.out}{skipped}{unreadable}", file=sys.stderr)
    return 1 if summary.errors else 0
