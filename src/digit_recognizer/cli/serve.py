"""`digits serve [--model MODEL] [--host 127.0.0.1] [--port 8000] [--workers N] [--api-key KEY]`.

uvicorn stops gracefully on SIGTERM or Ctrl+C: it stops accepting connections,
finishes the requests in flight, then the worker processes are stopped.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys


def register(subparsers):
    p = subparsers.add_parser(
        "serve",
        help="run the web app (drawing page + REST API)",
        description="Serve the drawing page at / and the REST API under /api (docs at /docs).",
    )
    p.add_argument("--model", metavar="MODEL",
                   help="model file (.safetensors); default: the model shipped with the package")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8000,
                   help="port to listen on; 0 picks a free one (default: 8000)")
    p.add_argument("--workers", type=_count, default=default_workers(), metavar="N",
                   help="processes that run predictions, each with its own copy of the model; 0 runs "
                        "them in a thread of the server process (default: one per core, at most 8, "
                        "0 on one core: %(default)s here)")
    p.add_argument("--no-training", dest="training", action="store_false",
                   help="turn off the page's \"watch it learn\" (POST /api/train answers 403)")
    p.add_argument("--api-key", metavar="KEY", default=os.environ.get("DIGITS_API_KEY") or None,
                   help="require this key on the API (as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'); "
                        "the page, /docs, /metrics and the health checks stay open (default: "
                        "$DIGITS_API_KEY, which keeps the key out of the process list; unset: no key)")
    p.set_defaults(func=run)


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return int(text)


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return int(text)


def default_workers() -> int:
    """One prediction process per core this process may use, at most 8; on a single core,
    none (a worker process would only add the hand-over to it)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(cores, 8) if cores > 1 else 0


def run(args) -> int:
    from digit_recognizer import modelfile
    from digit_recognizer.errors import DigitsError
    from digit_recognizer.extras import install_command

    try:
        import uvicorn

        from digit_recognizer.serve.app import create_app, one_thread
        from digit_recognizer.serve.protocol import LimitedHttpProtocol
    except ImportError as error:
        raise DigitsError(
            f"digits serve needs the serve extra ({error.name} is missing): {install_command('serve')}"
        ) from None

    model = modelfile.load(args.model)  # a bad model file is one clear error, before any worker starts
    # Bind here rather than inside uvicorn so that a busy port is one clear error line.
    try:
        family, kind, proto, _, address = socket.getaddrinfo(args.host, args.port, type=socket.SOCK_STREAM)[0]
        # proto must say TCP: asyncio only turns Nagle's algorithm off (TCP_NODELAY) on sockets
        # that do, and with it on every response waits ~40 ms for a delayed ACK.
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)  # connections queue from now on, before uvicorn starts accepting
    except (OSError, OverflowError) as error:
        reason = getattr(error, "strerror", None) or error
        raise DigitsError(f"cannot listen on {args.host}:{args.port}: {reason}") from None
    app = create_app(model, workers=args.workers, api_key=args.api_key, training=args.training)
    # Until uvicorn takes over the signals, SIGTERM stops the start-up as Ctrl+C does, so the
    # worker processes are stopped too rather than left behind.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        app.state.predictor.start()  # the worker processes load the model before "serving on"
        signal.signal(signal.SIGTERM, previous)
        host, port = sock.getsockname()[:2]
        host = f"[{host}]" if ":" in host else host  # an IPv6 address
        print(f"digits: serving on http://{host}:{port}/ (API docs at /docs; Ctrl+C stops)", file=sys.stderr)
        one_thread()  # for predictions in this process (--workers 0)
        uvicorn.Server(uvicorn.Config(app, log_level="warning", http=LimitedHttpProtocol)).run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)
        app.state.predictor.close()
    return 0
