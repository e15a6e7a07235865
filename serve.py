"""`python main.py serve`: a page to draw digits on, and a JSON API, on FastAPI served by uvicorn.

The page and its script live in static/ and load nothing from elsewhere; so do the API docs at /docs
(fastapi-offline serves Swagger UI's files itself). Every image goes through predict's
read_ink, prepare and read_digits, as in `python main.py predict`.

Hostile clients are bounded by serve_guards.py; images decode in serve_decoder.py, large ones in worker processes
of their own, so that /api/health never waits behind them; a stop waits SHUTDOWN_SECONDS for requests in flight
(docs/serving.md).
"""

import asyncio
import contextlib
import gc
import socket
from pathlib import Path

import uvicorn
from fastapi import HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel

from cli import add_min_confidence_option, add_model_option, add_views_option, listen_address, port_number, positive
from config import MIN_CONFIDENCE
from errors import InputError
from predict import BlankImage, ImageError, NotAnImage, TooManyPixels, read_digits
from serve_decoder import Decoder
from serve_guards import (
    DEFAULT_REQUEST_TIMEOUT,
    HEADER_LIMIT_BYTES,
    MAX_IN_FLIGHT,
    MAX_UPLOADS,
    Admission,
    RequestChecks,
    SecurityHeaders,
    Slots,
    TimedH11Protocol,
    read_image,
    url_host,
)

STATIC_DIR = Path(__file__).parent / "static"
DEFAULT_HOST, DEFAULT_PORT, DEFAULT_MAX_UPLOAD_MB = "127.0.0.1", 8000, 5.0
STATUS = {NotAnImage: 415, TooManyPixels: 413, BlankImage: 422}  # any other ImageError (truncated): 400
KEEP_ALIVE_SECONDS = 5  # an idle connection is closed after this
SHUTDOWN_SECONDS = 5  # Ctrl-C or SIGTERM: requests in flight get this long, then are cut off
REQUEST_BODY = {  # for /docs: the endpoint reads its body itself, to refuse an oversized one early
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {"type": "object", "properties": {"image": {"type": "string", "format": "binary"}}}
        },
        "image/*": {"schema": {"type": "string", "format": "binary"}},
    },
}


def add_arguments(parser):
    add_model_option(parser)
    add_views_option(parser)
    add_min_confidence_option(parser)
    parser.add_argument(
        "--host",
        type=listen_address,
        default=DEFAULT_HOST,
        help="address to listen on; 0.0.0.0 opens it to other machines",
    )
    parser.add_argument("--port", type=port_number, default=DEFAULT_PORT, help="TCP port")
    parser.add_argument(
        "--request-timeout",
        type=positive(float),
        default=DEFAULT_REQUEST_TIMEOUT,
        help="seconds a request's headers, and then its body, may take to arrive (slower: closed, or 408)",
    )
    parser.add_argument(
        "--allowed-hosts",
        nargs="+",
        metavar="HOST",
        help="Host headers the server answers; others get 400 (default: the --host address, localhost, 127.0.0.1)",
    )
    parser.add_argument(
        "--max-upload-mb",
        type=positive(float),  # finite: inf is refused
        default=DEFAULT_MAX_UPLOAD_MB,
        help="larger uploads are refused (HTTP 413)",
    )


def run(args):
    serve(
        args.model,
        args.host,
        args.port,
        args.max_upload_mb,
        args.allowed_hosts,
        args.request_timeout,
        args.min_confidence,
        args.views,
    )


class TopDigit(BaseModel):
    digit: int
    probability: float  # %


class Prediction(BaseModel):
    digit: int
    confidence: float  # %, calibrated
    sure: bool  # false: the confidence is below --min-confidence, or not_a_digit; the top3 are guesses
    not_a_digit: bool  # the energy is above the threshold of a model trained on non-digits: unlike any digit
    probabilities: list[float]  # % for each digit 0..9
    top3: list[TopDigit]
    image: list[list[int]]  # the 28x28 image the model saw, 0 (background) to 255 (ink)


class Health(BaseModel):
    status: str
    model: str
    architecture: str
    parameters: int
    view_margin: float  # images read again through the test-time views below this logit margin; 0: never
    temperature: float  # probabilities are softmax(logits / temperature)
    min_confidence: float  # %
    energy_threshold: float | None  # not sure above this energy too; None: the confidence alone decides


def create_app(
    model,
    model_path,
    max_upload_bytes,
    allowed_hosts,
    request_timeout=DEFAULT_REQUEST_TIMEOUT,
    min_confidence=MIN_CONFIDENCE,
):
    from model import count_parameters

    @contextlib.asynccontextmanager
    async def lifespan(app):
        decoder.start()  # before the first request
        yield
        decoder.close()

    app = FastAPIOffline(
        lifespan=lifespan,
        title="MNIST digit reader",
        summary="Draw a digit or send an image; a <25k-parameter CNN reads it.",
        redoc_url=None,  # ReDoc's bundle fetches its logo from another host; /docs is the API's page
    )
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    # The middleware added last runs first: headers on every response, then the request checks, then admission.
    app.add_middleware(Admission, path="/api/predict", limit=MAX_UPLOADS)
    app.add_middleware(RequestChecks, allowed_hosts=allowed_hosts)
    app.add_middleware(SecurityHeaders)
    predictions = Slots(MAX_IN_FLIGHT)
    batcher = Batcher(model, min_confidence)
    decoder = Decoder()
    health = Health(
        status="ok",
        model=str(model_path),
        architecture=model.arch,
        parameters=count_parameters(model),
        view_margin=model.view_margin,
        temperature=model.temperature,
        min_confidence=min_confidence,
        energy_threshold=model.energy_threshold,
    )

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    def page():
        return FileResponse(STATIC_DIR / "index.html")

    @app.api_route("/api/health", methods=["GET", "HEAD"])
    async def get_health() -> Health:  # on the event loop itself: no thread pool to queue behind
        return health

    @app.post(
        "/api/predict",
        openapi_extra={"requestBody": REQUEST_BODY},
        responses={
            status: {"description": "the image cannot be read, or the server is busy"}
            for status in (400, 408, 413, 415, 422, 503)
        },
    )
    async def predict(request: Request) -> Prediction:
        """The digit in one image, the ten probabilities, and the 28x28 image the model saw."""
        data = await read_image(request, max_upload_bytes, request_timeout)
        with predictions.hold():
            try:
                prepared = await decoder.prepared(data)
            except ImageError as error:
                raise HTTPException(STATUS.get(type(error), 400), str(error)) from None
            del data  # the upload's bytes are not needed while the model reads
            result = await batcher.read(prepared)
        return Prediction(**result, image=(prepared * 255).round().int().tolist())

    return app


class Batcher:
    """Reads the images of all the requests waiting for the model in one forward pass.

    While the model works on one batch (in a worker thread), the images of new requests gather, and
    the next batch takes them all: under load a batch holds about as many images as there are
    clients, and one image alone waits for nothing.
    """

    def __init__(self, model, min_confidence):
        self.model, self.min_confidence = model, min_confidence
        self.waiting = []  # (prepared image, future of its reading)
        self.busy = False
        self.task = None

    async def read(self, prepared):
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((prepared, future))
        if not self.busy:
            self.busy = True
            self.task = asyncio.create_task(self.run())  # held, so that it is not collected mid-run
        return await future

    async def run(self):
        import torch

        try:
            while self.waiting:
                batch, self.waiting = self.waiting, []
                images = torch.stack([image for image, _ in batch])
                try:
                    readings = await run_in_threadpool(read_digits, self.model, images, self.min_confidence)
                except Exception as error:  # noqa: BLE001  each waiting request answers with it
                    for _, future in batch:
                        future.set_exception(error)
                    continue
                for (_, future), reading in zip(batch, readings, strict=True):
                    future.set_result(reading)
        finally:
            self.busy = False


def serve(
    model_path,
    host,
    port,
    max_upload_mb,
    allowed_hosts=None,
    request_timeout=DEFAULT_REQUEST_TIMEOUT,
    min_confidence=MIN_CONFIDENCE,
    views=True,
):
    """Load the model and bind the port (their errors come first), then serve until Ctrl-C or SIGTERM."""
    import torch

    from checkpoint import load_model

    model = load_model(model_path, views)
    listening = bound_socket(host, port)
    # Requests are prepared side by side in threads while the model reads a batch in another, and images decode
    # in worker processes: one intra-op thread each keeps them from fighting over the cores (docs/serving.md).
    torch.set_num_threads(1)
    allowed_hosts = allowed_hosts or [host, "localhost", "127.0.0.1"]
    app = create_app(model, model_path, int(max_upload_mb * 2**20), allowed_hosts, request_timeout, min_confidence)
    # torch and the model leave hundreds of thousands of objects that every full garbage collection walked,
    # on the event loop: the one /api/health check over 100 ms under the abuse load. Frozen, they are skipped.
    gc.collect()
    gc.freeze()
    print(f"serving {model_path} at http://{url_host(host)}:{port} (API docs at /docs); Ctrl-C stops", flush=True)
    config = uvicorn.Config(
        app,
        access_log=False,  # a line per request would drown the rest
        http=type("Protocol", (TimedH11Protocol,), {"head_seconds": request_timeout}),
        h11_max_incomplete_event_size=HEADER_LIMIT_BYTES,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=SHUTDOWN_SECONDS,
    )
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the Ctrl-C it has handled, as uvicorn.run drops
        Server(config).run(sockets=[listening])


class Server(uvicorn.Server):
    """uvicorn's server, whose forced quit (a second Ctrl-C) still shuts the app down: uvicorn skips that step, so the
    decoding workers were left to the interpreter's exit and starlette logged the cancelled lifespan's traceback."""

    async def shutdown(self, sockets=None):
        await super().shutdown(sockets)
        if self.force_exit and not self.lifespan.shutdown_event.is_set():
            await self.lifespan.shutdown()


def bound_socket(host, port):
    """A TCP socket bound to host:port, as uvicorn binds one (IPv6 where the host has a colon). Bound here, before
    the server says it is serving, so that a port in use is a one-line error and not a log line after that."""
    listening = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind((host, port))
    except OSError as error:
        listening.close()
        reason = error.strerror or str(error)
        raise InputError(
            f"cannot listen on {url_host(host)}:{port} ({reason}); choose another --port or --host"
        ) from None
    return listening
