"""The FastAPI application: the drawing page, ``POST /api/predict`` and model information.

Every prediction takes the steps of :func:`digit_recognizer.predict.predict_image`,
the function behind ``digits predict``, so the page, the API and the CLI agree to the
last digit. Predictions run in worker processes or a thread (``inference.Predictor``),
never on the event loop, which keeps reading requests meanwhile.

For operations: ``GET /metrics`` (Prometheus, see ``metrics``), ``GET /api/health``
(liveness) and ``GET /api/ready`` (readiness: 503 until the workers are up), and an
optional API key (``access``).

Errors are JSON ``{"error": "one line"}`` with a 4xx status: 401 for a missing API key, 413 for a body
over the upload limit, 415 for a body that is neither an upload nor JSON, 400
for a malformed multipart body, 422 for an unreadable image, an image without
a digit or malformed pixels. A 500 would be a bug.
"""

import asyncio
import base64
import hashlib
import re
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException

from digit_recognizer import __version__
from digit_recognizer.errors import DigitsError
from digit_recognizer.serve import access
from digit_recognizer.serve.access import ApiKey
from digit_recognizer.serve.inference import Predictor, WorkersUnavailable
from digit_recognizer.serve.inside import run_explanation
from digit_recognizer.serve.learning import TrainingSession, add_routes
from digit_recognizer.serve.metrics import Metrics, RequestMetrics

STATIC = Path(__file__).resolve().parent / "static"
MAX_UPLOAD_BYTES = 5 * 1024 * 1024  # a large phone photo; anything bigger is refused with 413
BODY_TIMEOUT = 30.0  # seconds for the whole body to arrive (5 MiB at 1.4 Mbit/s); then 408
# Training settings that name the trainer's machine (its folders), not the model: kept from /api/model.
LOCAL_SETTINGS = {"data_dir", "out", "resume"}
PAGE_POLICY = "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'"

Pixel = Annotated[float, Field(ge=0, le=255, allow_inf_nan=False, strict=True)]  # strict: no true/false
Row = Annotated[list[Pixel], Field(min_length=28, max_length=28)]


class PixelsRequest(BaseModel):
    """A 28x28 grey image as nested lists, as in the MNIST files: white digit on black."""

    pixels: Annotated[list[Row], Field(min_length=28, max_length=28)] = Field(
        description="28 rows of 28 grey levels, 0-255 (or 0-1 if no value exceeds 1); "
        "it goes through the same preprocessing as an uploaded image"
    )


class Reading(BaseModel):
    digit: int = Field(description="index of the most likely class")
    confidence: float = Field(description="its probability")
    top_k: list[tuple[int, float]] = Field(description="the k most likely [class, probability] pairs")
    probabilities: list[float] | None = Field(None, description="every class's probability (in `digits`)")


class Prediction(Reading):
    """What ``digits predict --json`` prints for one image (less "path"), plus what the page shows."""

    low_confidence: bool = Field(description="confidence below the threshold of `digits predict`")
    number: str | None = Field(None, description="all digits left to right, for an image with several")
    digits: list[Reading] | None = Field(None, description="one reading per digit, for an image with several")
    probabilities: list[float] = Field(description="every class's probability (of the first digit)")
    image: str = Field(description="the 28x28 input(s) the network saw: a data:image/png;base64 URL")


class Step(BaseModel):
    name: str = Field(description="file-name part of the step, as `digits predict --show-steps` writes it")
    label: str = Field(description="what the picture shows")
    image: str = Field(description="a data:image/png;base64 URL")


class LayerView(BaseModel):
    index: int = Field(description="position of the layer in the network")
    type: str = Field(description="the engine's layer class, e.g. Conv2D")
    label: str = Field(description="the layer and its settings in words")
    shape: list[int] = Field(description="its output for this image: [channels, height, width] or [features]")
    min: float
    max: float
    role: str = Field(description='"logits" for the last layer (the class scores), else "hidden"')
    maps: str | None = Field(None, description="feature maps as one PNG of tiles (a data: URL), "
                                               "scaled by the layer's largest magnitude")
    values: list[float] | None = Field(None, description="the output vector, for a dense layer")


class Explanation(Prediction):
    """``/api/predict``'s answer, plus what happens inside the network for the first digit read."""

    steps: list[Step] = Field(description="the preprocessing steps as pictures")
    input: str = Field(description="the 28x28 input of the explained digit (data: URL)")
    saliency: str = Field(description="| d score / d pixel | of the predicted class over the input (data: URL)")
    explained: dict = Field(description='{"digit": predicted class, "position": which digit of the number '
                                        '(?position=, 0 for the first)}')
    layers: list[LayerView] = Field(description="every layer's output, in order")


def _docs_page(title: str) -> tuple[str, str]:
    """The /docs page (Swagger UI, served from the package: it works offline) and the
    Content-Security-Policy that lets exactly its scripts run: the bundle from 'self' and
    the one inline script that starts it, by its hash."""
    html = get_swagger_ui_html(
        openapi_url="/openapi.json", title=f"{title} - API docs",
        swagger_js_url="/static/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url="/static/swagger-ui/swagger-ui.css",
        swagger_favicon_url="/static/swagger-ui/favicon-32x32.png",
        swagger_ui_parameters={"validatorUrl": None},  # else a badge image from the validator's site
    ).body.decode()
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in re.findall(r"<script>(.*?)</script>", html, re.S)
    )
    # Swagger UI sets style attributes as it renders: 'unsafe-inline' for styles only.
    policy = (f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
              "img-src 'self' data:; object-src 'none'; base-uri 'none'")
    return html, policy


class Error(BaseModel):
    error: str


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class BodyLimit:
    """ASGI middleware: read the request body up front and answer 413 past ``max_bytes``,
    408 (closing the connection) when it is not all there within ``timeout`` seconds.

    Checking Content-Length alone is not enough (chunked uploads have none), so the
    body is counted as it arrives and handed on only when it is whole and small.
    """

    def __init__(self, app, max_bytes: int, timeout: float = 30.0):
        self.app, self.max_bytes, self.timeout = app, max_bytes, timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = f"{self.max_bytes / 2**20:g} MiB" if self.max_bytes >= 2**20 else f"{self.max_bytes / 1024:g} KiB"
        too_large = _error(413, f"request body over the {limit} limit")
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if length.isdigit() and int(length) > self.max_bytes:
            return await too_large(scope, receive, send)
        chunks, size = [], 0
        try:
            async with asyncio.timeout(self.timeout):  # a body trickling in would hold a connection for ever
                while True:
                    message = await receive()
                    if message["type"] != "http.request":  # the client went away
                        return
                    chunks.append(message.get("body", b""))
                    size += len(chunks[-1])
                    if size > self.max_bytes:
                        return await too_large(scope, receive, send)
                    if not message.get("more_body"):
                        break
        except TimeoutError:
            too_slow = _error(408, f"request body not received within {self.timeout:g} s")
            too_slow.headers["Connection"] = "close"
            return await too_slow(scope, receive, send)
        body, delivered = b"".join(chunks), False

        async def replay():
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def _read_source(request: Request):
    """The image in the request: a multipart ``file``, a raw image body, or JSON pixels."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=8)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise DigitsError("send the image as a file in the multipart field 'file'")
        return await upload.read()
    if kind.startswith("image/") or kind == "application/octet-stream":
        return await request.body()
    if kind == "application/json" or kind.endswith("+json"):
        try:
            payload = PixelsRequest.model_validate_json(await request.body())
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "body"
            raise DigitsError(f"bad JSON pixels at {where}: {first['msg']}") from None
        return np.asarray(payload.pixels, dtype=np.float32)  # preprocess reads arrays as images
    raise HTTPException(
        415, "send an image as multipart/form-data (field 'file'), as an image/* body, "
             "or JSON {\"pixels\": [[...28 numbers...], ...28 rows]}"
    )


def one_thread() -> None:
    """Predict on one thread (``nn.threads(1)``: the engine's and BLAS's): for a server that
    predicts in one thread of its process.

    A request multiplies a few images at most, and OpenBLAS threads inside such
    small products only spin and contend: the load test measured 56 ms of CPU per
    request with two BLAS threads, 9 ms with one.
    """
    from digit_recognizer import nn

    nn.threads(1)


def create_app(model, *, workers: int = 0, max_upload_bytes: int = MAX_UPLOAD_BYTES,
               api_key: str | None = None, training: bool = True) -> FastAPI:
    """The web app serving ``model`` (a ``modelfile.Model``). Predictions run in ``workers``
    processes, or with ``workers=0`` in one thread of this process (see ``inference``).
    ``api_key``: require it on the API (see ``access``); None leaves the API open.
    ``training``: allow the page's "watch it learn" (``learning``)."""
    n_classes = len(model.classes)
    predictor = Predictor(model, workers)
    metrics = Metrics(predictor)
    training = TrainingSession(enabled=training)

    @asynccontextmanager
    async def lifespan(app):
        try:
            await asyncio.to_thread(predictor.start)  # workers load the model before the first request
        except WorkersUnavailable:
            pass  # /api/ready says so, and the predictor keeps trying to start them
        try:
            yield
        finally:
            training.close()
            await asyncio.to_thread(predictor.close)

    app = FastAPI(
        title="digit-recognizer",
        version=__version__,
        description="Handwritten-digit recognition. Draw at `/`, or POST an image to `/api/predict`.",
        lifespan=lifespan,
        docs_url=None,  # served below, from the package
        redoc_url=None,
    )
    app.state.predictor = predictor
    app.state.metrics = metrics
    app.state.training = training
    # The last added runs first: metrics see every answer, the key is checked before a body is read.
    app.add_middleware(BodyLimit, max_bytes=max_upload_bytes, timeout=BODY_TIMEOUT)
    if api_key:
        app.add_middleware(ApiKey, key=api_key)
        access.document(app)
    app.add_middleware(RequestMetrics, metrics=metrics, routes=app.router.routes)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(DigitsError)
    async def digits_error(request, error):
        return _error(422, str(error))

    @app.exception_handler(WorkersUnavailable)
    async def workers_unavailable(request, error):
        response = _error(503, f"no prediction worker is available: {error}; try again shortly")
        response.headers["Retry-After"] = "1"
        return response

    @app.exception_handler(HTTPException)
    async def http_error(request, error):
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code,
                            headers=getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, error):
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return _error(422, f"invalid {where}: {first['msg']}")

    @app.exception_handler(Exception)
    async def internal_error(request, error):  # a bug, never the client's input
        return _error(500, "internal server error")

    @app.get("/", include_in_schema=False)
    async def page():
        # The page loads nothing from elsewhere, and the browser is told to hold it to that.
        return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": PAGE_POLICY})

    docs_html, docs_policy = _docs_page(app.title)

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return HTMLResponse(docs_html, headers={"Content-Security-Policy": docs_policy})

    @app.get("/api/health", summary="Liveness check: the server answers")
    async def health():
        return {"status": "ok", "version": __version__}

    @app.get("/api/ready", summary="Readiness check: the model is loaded and the workers are up",
             responses={503: {"model": Error}})
    async def ready():
        if not predictor.ready():
            return _error(503, "not ready: the prediction workers are starting or being replaced")
        return {"status": "ready", "workers": predictor.workers}

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics():
        text, media_type = metrics.exposition()
        return Response(text, media_type=media_type)

    @app.get("/api/model", summary="The model being served")
    async def model_info():
        meta = model.metadata
        training = {key: value for key, value in (meta.get("training") or {}).items()
                    if key not in LOCAL_SETTINGS}
        return {
            "name": meta.get("name"),
            "architecture": meta.get("spec"),
            "parameters": int(sum(p.data.size for p in model.net.parameters())),
            "classes": model.classes,
            "dataset": meta.get("dataset"),
            "normalization": {"mean": meta.get("mean"), "std": meta.get("std")},
            "metrics": meta.get("metrics"),
            "training": training or None,
            "version": meta.get("version"),
        }

    body_doc = {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "required": ["file"],
                           "properties": {"file": {"type": "string", "format": "binary"}}},
            },
            "application/json": {"schema": PixelsRequest.model_json_schema()},
        },
    }

    Which = Annotated[Literal["served", "trained"], Query(
        description="served: the model this server was started with; trained: the one trained "
                    "last in the page's \"watch it learn\" view (POST /api/train)")]

    def chosen(which: str) -> Predictor:
        return predictor if which == "served" else training.trained_predictor()

    @app.post(
        "/api/predict",
        summary="Recognise the digit in an image",
        response_model=None,  # pass predict_image's answer through unfiltered; Prediction documents it
        responses={200: {"model": Prediction}, 400: {"model": Error}, 413: {"model": Error},
                   409: {"model": Error}, 415: {"model": Error}, 422: {"model": Error},
                   503: {"model": Error}},
        openapi_extra={"requestBody": body_doc},
    )
    async def predict_route(
        request: Request,
        top_k: Annotated[int, Query(ge=1, le=n_classes, description="how many classes to list")] = 3,
        model: Which = "served",
    ):
        source = await _read_source(request)
        try:
            answer = await chosen(model)(source, top_k)
        except WorkersUnavailable:
            raise
        except DigitsError:
            metrics.prediction_errors.inc()
            raise
        metrics.count_answer(answer)
        return Response(answer, media_type="application/json")

    @app.post(
        "/api/explain",
        summary="Look inside the network while it reads an image",
        description="The same reading as `/api/predict`, plus the preprocessing steps, the saliency map "
                    "and every layer's output for one digit (the first, or `?position=`), from the engine's "
                    "own forward and backward passes.",
        response_model=None,
        responses={200: {"model": Explanation}, 400: {"model": Error}, 413: {"model": Error},
                   409: {"model": Error}, 415: {"model": Error}, 422: {"model": Error}},
        openapi_extra={"requestBody": body_doc},
    )
    async def explain_route(
        request: Request,
        top_k: Annotated[int, Query(ge=1, le=n_classes, description="how many classes to list")] = 3,
        model: Which = "served",
        position: Annotated[int, Query(ge=0, le=1000, description="which digit of a number to explain, "
                                                                  "from 0 (the first, left to right)")] = 0,
    ):
        source = await _read_source(request)
        task = partial(run_explanation, position=position) if position else run_explanation
        return Response(await chosen(model)(source, top_k, task=task), media_type="application/json")

    add_routes(app, training, Error)

    return app
