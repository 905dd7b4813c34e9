"""The Dockerfile, checked for what the image must be without building it (no container
engine needed): a pinned slim base, a user without privileges, the serve extra with the
shipped model, a health check on readiness, graceful stop, every copied file present."""

import json
import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _instructions():
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def _all(name):
    return [args for instruction, args in _instructions() if instruction == name]


def test_base_image_is_pinned_and_slim():
    (base,) = _all("FROM")
    image, _, tag = base.partition(":")
    assert image == "python" and "slim" in tag
    assert re.match(r"3\.\d+\.\d+-slim-[a-z]+$", tag), f"{base}: pin the Python patch release and the distro"


def test_runs_as_a_user_without_privileges():
    instructions = _instructions()
    users = [i for i, (name, _) in enumerate(instructions) if name == "USER"]
    assert users, "no USER: the server would run as root"
    user = instructions[users[-1]][1].split(":")[0]
    assert user not in ("root", "0")
    assert any("useradd" in args and user in args for args in _all("RUN"))
    start = [i for i, (name, _) in enumerate(instructions) if name in ("ENTRYPOINT", "CMD")]
    assert users[-1] < min(start), "USER must come before the server starts"
    assert not any(i > users[-1] for i, (name, _) in enumerate(instructions) if name == "RUN" and
                   "pip install" in instructions[i][1]), "installing as the unprivileged user"


def test_installs_the_serve_extra_with_the_shipped_model():
    installs = [args for args in _all("RUN") if "pip install" in args]
    assert len(installs) == 1 and '".[serve]"' in installs[0] and "-e " not in installs[0]
    copied = [shlex.split(args)[:-1] for args in _all("COPY")]
    sources = [source for sources in copied for source in sources]
    assert "src" in sources  # the package, and with it pretrained/*.safetensors (package data)
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
    assert (ROOT / "src/digit_recognizer/pretrained/mnist-cnn.safetensors").exists()
    # .dockerignore lets through exactly what is copied: no .venv, runs or data in the build context
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    assert "*" in ignore and set(sources) <= set(allowed)


def test_health_check_asks_for_readiness():
    (check,) = _all("HEALTHCHECK")
    assert re.search(r"--interval=\d+s", check) and re.search(r"--start-period=\d+s", check)
    command = json.loads(check.split("CMD", 1)[1])
    assert command[0] == "python" and "127.0.0.1:8000/api/ready" in command[-1]


def test_serves_on_all_interfaces_and_stops_gracefully():
    (entrypoint,) = _all("ENTRYPOINT")
    command = json.loads(entrypoint)
    assert command[:2] == ["digits", "serve"]
    assert command[command.index("--host") + 1] == "0.0.0.0" and command[command.index("--port") + 1] == "8000"
    assert _all("EXPOSE") == ["8000"] and _all("STOPSIGNAL") == ["SIGTERM"]
    assert _all("CMD") == ["[]"]  # `docker run IMAGE --workers 2` adds to the serve command
