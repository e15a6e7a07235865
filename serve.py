"""`python main.py serve`: a page to draw digits on, and a JSON API, on FastAPI served by uvicorn.

The page and its script live in static/ and load nothing from elsewhere; so do the API docs at /docs
(fastapi-offline serves Swagger UI's files itself). Every image goes through predict's
read_ink, prepare and read_digits, as in `python main.py predict`.

Hostile clients are bounded (docs/serving.md): at most MAX_UPLOADS uploads arrive at once (more get 503 at
once, after a bounded drain of their body so that the client reads it), each at MIN_UPLOAD_RATE or faster after
UPLOAD_GRACE_SECONDS (else 408); a prediction slot (MAX_IN_FLIGHT) is taken only once a body has arrived, so slow
uploads cannot starve predictions; images over IN_PROCESS_PIXELS decode DECODE_PROCESSES at a time in processes of
their own, so /api/health never waits behind them; a request head must fit in HEADER_LIMIT_BYTES, and it and
then the body must each arrive within --request-timeout; a request carrying both Content-Length and
Transfer-Encoding is refused and its connection closed (RFC 9112); a stop waits SHUTDOWN_SECONDS for requests in
flight.
"""

import asyncio
import contextlib
import ctypes
import gc
import io
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import uvicorn
from fastapi import HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel
from starlette.requests import ClientDisconnect
from uvicorn.protocols.http.h11_impl import H11Protocol

from cli import add_min_confidence_option, add_model_option, port_number, positive
from config import MIN_CONFIDENCE
from predict import (
    WORKING_SIDE,
    BlankImage,
    ImageError,
    NotAnImage,
    TooManyPixels,
    header_pixels,
    prepare,
    prepared_image,
    read_digits,
    read_ink,
)

STATIC_DIR = Path(__file__).parent / "static"
DEFAULT_HOST, DEFAULT_PORT, DEFAULT_MAX_UPLOAD_MB = "127.0.0.1", 8000, 5.0
STATUS = {NotAnImage: 415, TooManyPixels: 413, BlankImage: 422}  # any other ImageError (truncated): 400
MAX_IN_FLIGHT = 32  # predictions at once (decoding or at the model, their body arrived); more get 503
MAX_UPLOADS = 64  # requests to /api/predict at once, bodies arriving included; more get 503 before routing
MIN_UPLOAD_RATE = 16 * 1024  # bytes a second an upload must keep up after UPLOAD_GRACE_SECONDS, else 408
UPLOAD_GRACE_SECONDS = 2.0
DRAIN_BYTES, DRAIN_SECONDS = 8 * 2**20, 1.0  # read of a refused body before closing, so that the client sees the 503
# Images over IN_PROCESS_PIXELS decode DECODE_PROCESSES at a time, each in a worker process: such a decode may take
# a few hundred MB for a moment, and in a thread of the server it held the event loop up to 180 ms (docs/serving.md).
IN_PROCESS_PIXELS = WORKING_SIDE**2
DECODE_PROCESSES = 2
DECODE_NICENESS = 10  # the decoding processes give way to the event loop on busy cores
WORKER_START_SECONDS = 60  # a worker imports predict; the server starts listening once every worker is ready
PR_SET_PDEATHSIG = 1  # Linux prctl: the signal a process gets when the thread that started it ends
DEFAULT_REQUEST_TIMEOUT = 30.0  # seconds a request's head, and then its body, may take to arrive
HEADER_LIMIT_BYTES = 64 * 1024  # larger request heads are refused (400) by h11
KEEP_ALIVE_SECONDS = 5  # an idle connection is closed after this
SHUTDOWN_SECONDS = 5  # Ctrl-C or SIGTERM: requests in flight get this long, then are cut off
PAGE_POLICY = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
# Swagger UI starts itself with an inline script and styles: still nothing from another origin.
DOCS_POLICY = PAGE_POLICY + "; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'"
SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY")]
UPLOAD_HELP = "send one image: multipart field 'image', or the raw bytes with an image/* content type"
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
    add_min_confidence_option(parser)
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on; 0.0.0.0 opens it to other machines")
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
    )


class TopDigit(BaseModel):
    digit: int
    probability: float  # %


class Prediction(BaseModel):
    digit: int
    confidence: float  # %, calibrated
    sure: bool  # false: the confidence is below --min-confidence, and the top3 are guesses
    probabilities: list[float]  # % for each digit 0..9
    top3: list[TopDigit]
    image: list[list[int]]  # the 28x28 image the model saw, 0 (background) to 255 (ink)


class Health(BaseModel):
    status: str
    model: str
    architecture: str
    parameters: int
    temperature: float  # probabilities are softmax(logits / temperature)
    min_confidence: float  # %


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
        temperature=model.temperature,
        min_confidence=min_confidence,
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


class Decoder:
    """Uploads read into 28x28 images. An image of at most IN_PROCESS_PIXELS (by its header) is decoded in a thread
    of the server; a larger one, whose decode may take hundreds of MB, in one of DECODE_PROCESSES worker processes,
    started with the server. A worker that dies (killed for memory, say) is replaced, and the uploads it held
    are answered 503."""

    def __init__(self):
        self.pool = None

    async def prepared(self, data):
        if header_pixels(io.BytesIO(data)) <= IN_PROCESS_PIXELS:
            return await run_in_threadpool(prepared_image, io.BytesIO(data))
        return await run_in_threadpool(prepare, await self.ink_in_worker(data))

    async def ink_in_worker(self, data):
        if self.pool is None:
            self.start()
        pool = self.pool
        try:
            return await asyncio.wrap_future(pool.submit(read_upload, data))
        except BrokenProcessPool:
            if self.pool is pool:
                pool.shutdown(wait=False, cancel_futures=True)
                self.pool = None
            raise HTTPException(503, "the image decoder stopped; try again", headers={"retry-after": "1"}) from None

    def start(self):
        """Starts every worker and waits until each is ready. On the event loop's thread: a worker's end is tied to
        the thread that started it (start_worker), and this one lasts as long as the server."""
        # Spawned, not forked from the server's threads: a child of the server itself, importing what it needs.
        context = multiprocessing.get_context("spawn")
        ready = context.Barrier(DECODE_PROCESSES + 1)
        pool = ProcessPoolExecutor(
            DECODE_PROCESSES, mp_context=context, initializer=start_worker, initargs=(os.getpid(), ready)
        )
        for _ in range(DECODE_PROCESSES):  # each submission starts a worker, none being idle yet
            pool.submit(os.getpid)
        ready.wait(WORKER_START_SECONDS)
        self.pool = pool

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
            self.pool = None


def read_upload(data):
    """In a worker process: the upload's ink (predict.read_ink); then the C heap's freed pages go back to the
    system, which glibc keeps otherwise (a burst of large decodes left a process holding 1.5 GB)."""
    try:
        return read_ink(io.BytesIO(data))
    finally:
        release_freed_memory()


def start_worker(server, ready):
    """A decoding worker gives way to the event loop on busy cores, leaves Ctrl-C to the server (which stops
    it), and ends once the server has gone, however it ended: no process is left behind."""
    with contextlib.suppress(AttributeError, OSError):  # no os.nice on Windows
        os.nice(DECODE_NICENESS)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform == "linux":  # the kernel kills it when the server's thread that started it ends
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    else:
        threading.Thread(target=exit_when_orphaned, args=(server,), daemon=True).start()
    if os.getppid() != server:  # the server ended before the lines above
        os._exit(1)
    ready.wait(WORKER_START_SECONDS)


def exit_when_orphaned(server):
    while os.getppid() == server:
        time.sleep(1)
    os._exit(1)


def release_freed_memory():
    with contextlib.suppress(AttributeError, OSError):  # glibc only
        ctypes.CDLL(None).malloc_trim(0)


BUSY = "busy: too many predictions in flight; try again"


class Slots:
    """A count of things in progress, at most `limit`: hold() takes one, or answers 503 when none is free."""

    def __init__(self, limit):
        self.limit, self.count = limit, 0

    @contextlib.contextmanager
    def hold(self):
        if self.count >= self.limit:
            raise HTTPException(503, BUSY, headers={"retry-after": "1"})
        self.count += 1
        try:
            yield
        finally:
            self.count -= 1


class Admission:
    """ASGI middleware: at most `limit` requests to `path` at once (their bodies arriving, decoding or at the
    model); one more is answered 503 before any routing, with Connection: close, after reading at most
    DRAIN_BYTES of its body for DRAIN_SECONDS (closed with its body unread, a client meets a connection reset
    instead of the answer)."""

    def __init__(self, app, path, limit):
        self.app, self.path, self.limit, self.count = app, path, limit, 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != self.path:
            return await self.app(scope, receive, send)
        if self.count >= self.limit:
            await drain(receive)
            return await refuse(send, 503, BUSY, [(b"retry-after", b"1")])
        self.count += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.count -= 1


async def drain(receive):
    """Read and drop a request's body, at most DRAIN_BYTES of it within DRAIN_SECONDS."""
    received = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DRAIN_SECONDS):
            while received <= DRAIN_BYTES:
                message = await receive()
                received += len(message.get("body", b""))
                if message["type"] != "http.request" or not message.get("more_body"):
                    break


async def refuse(send, status, detail, headers=()):
    """Answer status with {"detail": detail} as JSON, and close the connection."""
    headers = [(b"content-type", b"application/json"), (b"connection", b"close"), *headers]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps({"detail": detail}).encode()})


class RequestChecks:
    """ASGI middleware: a Host header that names an allowed host (IPv6 addresses in brackets, with or without a
    port; "*" and "*.domain" patterns as in --allowed-hosts), else 400; and no request that carries both
    Content-Length and Transfer-Encoding (RFC 9112: a smuggling pattern), answered 400 and its connection closed."""

    def __init__(self, app, allowed_hosts):
        self.app, self.allowed = app, [bare_host(host) for host in allowed_hosts]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {name.lower(): value for name, value in scope["headers"]}
        if b"content-length" in headers and b"transfer-encoding" in headers:
            return await refuse(send, 400, "a request with both Content-Length and Transfer-Encoding")
        host = host_of(headers.get(b"host", b"").decode("latin-1"))
        if not any(host_matches(host, allowed) for allowed in self.allowed):
            return await refuse(send, 400, "invalid host header")
        await self.app(scope, receive, send)


def bare_host(host):
    """An address without IPv6 brackets, lower case: [::1] -> ::1."""
    return host.removeprefix("[").removesuffix("]").lower()


def host_of(header):
    """The host a Host header names, without its port: [::1]:8000 -> ::1, localhost:8000 -> localhost."""
    if header.startswith("["):
        return bare_host(header.partition("]")[0] + "]")
    return header.rpartition(":")[0].lower() if ":" in header else header.lower()


def host_matches(host, allowed):
    if allowed == "*":
        return True
    if allowed.startswith("*."):
        return host.endswith(allowed[1:])
    return host == allowed


def url_host(host):
    """host as a URL writes it: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


class SecurityHeaders:
    """Adds a Content-Security-Policy (the server's own origin only), nosniff and no framing to every response."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        policy = DOCS_POLICY if scope["path"].startswith("/docs") else PAGE_POLICY

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), *SECURITY_HEADERS]
                message = {**message, "headers": [*headers, (b"content-security-policy", policy.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


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


async def read_image(request, limit, timeout):
    """The uploaded image's bytes; refuses a body over limit bytes as soon as it is known to be, and one that
    has not arrived within timeout seconds."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    body = bytearray()
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        # The deadline moves with what has arrived: UPLOAD_GRACE_SECONDS, then MIN_UPLOAD_RATE; never past timeout.
        async with asyncio.timeout(start + min(timeout, UPLOAD_GRACE_SECONDS)) as deadline:
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise too_large(limit)
                deadline.reschedule(start + min(timeout, UPLOAD_GRACE_SECONDS + len(body) / MIN_UPLOAD_RATE))
    except TimeoutError:
        raise HTTPException(
            408,
            f"the upload did not arrive within {timeout:g} s (--request-timeout), or slower than "
            f"{MIN_UPLOAD_RATE // 1024} KB/s",
        ) from None
    except ClientDisconnect:  # the client left: there is no one to answer, and nothing to log
        raise HTTPException(400, "the client disconnected mid-upload") from None
    content_type = request.headers.get("content-type", "").lower()  # media types are case-insensitive
    if content_type.startswith("multipart/form-data"):
        body = await image_field(request, bytes(body))
    elif body and not content_type.startswith("image/"):
        raise HTTPException(415, f"content type {content_type or 'none'}: {UPLOAD_HELP}")
    if not body:
        raise HTTPException(400, f"no image: {UPLOAD_HELP}")
    return bytes(body)


async def image_field(request, body):
    """The 'image' file of a multipart body already read into memory."""

    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        async with Request(request.scope, replay).form(max_files=1, max_fields=10) as form:
            upload = form.get("image")
            if upload is None or isinstance(upload, str):
                raise HTTPException(400, f"no file in field 'image': {UPLOAD_HELP}")
            return await upload.read()
    except HTTPException:
        raise
    except Exception as error:  # noqa: BLE001  the multipart parser's errors for a malformed body
        raise HTTPException(400, f"malformed multipart body ({error})") from None


def too_large(limit):
    return HTTPException(413, f"upload over the {limit / 2**20:g} MB limit (--max-upload-mb)")


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request head has not arrived within head_seconds
    (uvicorn times idle connections only, so a client sending its headers a byte at a time stayed open), and
    at a stop, ending a request whose body is still arriving instead of waiting for it."""

    head_seconds = DEFAULT_REQUEST_TIMEOUT
    head_timer = None

    def connection_made(self, transport):
        super().connection_made(transport)
        self._await_head()

    def on_response_complete(self):
        super().on_response_complete()
        self._await_head()  # the next request on this connection has the same time

    def data_received(self, data):
        super().data_received(data)
        if self.cycle is not None and not self.cycle.response_complete and self.head_timer:
            self.head_timer.cancel()  # a request is under way: the app times its body
            self.head_timer = None

    def shutdown(self):
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and cycle.more_body:
            # A body still arriving would hold the stop until it is cancelled: end it as a client that left.
            cycle.disconnected = True
            cycle.message_event.set()
            self.transport.close()
            return
        super().shutdown()

    def connection_lost(self, exc):
        if self.head_timer:
            self.head_timer.cancel()
        super().connection_lost(exc)

    def _await_head(self):
        if self.head_timer:
            self.head_timer.cancel()
        self.head_timer = self.loop.call_later(self.head_seconds, self._head_too_slow)

    def _head_too_slow(self):
        if self.cycle is None or self.cycle.response_complete:
            self.transport.close()


def serve(
    model_path,
    host,
    port,
    max_upload_mb,
    allowed_hosts=None,
    request_timeout=DEFAULT_REQUEST_TIMEOUT,
    min_confidence=MIN_CONFIDENCE,
):
    """Load the model (its errors come before the port opens), then serve until Ctrl-C or SIGTERM."""
    import torch

    from checkpoint import load_model

    model = load_model(model_path)
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
    uvicorn.run(
        app,
        host=host,
        port=port,
        access_log=False,  # a line per request would drown the rest
        http=type("Protocol", (TimedH11Protocol,), {"head_seconds": request_timeout}),
        h11_max_incomplete_event_size=HEADER_LIMIT_BYTES,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=SHUTDOWN_SECONDS,
    )
