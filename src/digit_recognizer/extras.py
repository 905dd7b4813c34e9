"""What to tell a user whose Python lacks a dependency: the pip command that adds it.

Imports nothing outside the standard library, so the entry points can use it
before the package's own dependencies are known to be importable.
"""

from __future__ import annotations

import sys


def install_command(extra: str | None = None) -> str:
    """The command that installs the package from a clone, with ``extra``: pip install -e ".[serve]"."""
    return f'pip install -e ".[{extra}]"' if extra else "pip install -e ."


def missing_dependency(prog: str, error: ModuleNotFoundError) -> str:
    """One line for a script started with a Python that lacks the package's dependencies."""
    return (f"{prog}: error: this Python ({sys.executable}) lacks {error.name}, a dependency of digit-recognizer: "
            f"run `make install`, then `.venv/bin/{prog}`; or `{install_command()}` into this Python")


def run_script(main, prog: str) -> int:
    """Run a classic entry point's ``main()``; a missing third-party module becomes one line.

    ``python src/train.py`` finds the package next to it but not its dependencies when the
    Python that runs it is not the project's environment.
    """
    try:
        return main()
    except ModuleNotFoundError as error:
        if not error.name or error.name.split(".")[0] == "digit_recognizer":
            raise  # a bug in the package, not a missing dependency
        print(missing_dependency(prog, error), file=sys.stderr)
        return 1
