"""`python main.py serve`: a page to draw digits on, and a JSON API, on FastAPI served by uvicorn.

The page and its script live in static/ and load nothing from elsewhere; so do the API docs at /docs
(fastapi-offline serves Swagger UI's files itself). Every image goes through predict's
prepared_image and read_digits, as in `python main.py predict`.
"""

import asyncio
import io
from pathlib import Path

import uvicorn
from fastapi import HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel

from cli import add_model_option, port_number, positive
from predict import BlankImage, ImageError, NotAnImage, TooManyPixels, prepared_image, read_digits

STATIC_DIR = Path(__file__).parent / "static"
DEFAULT_HOST, DEFAULT_PORT, DEFAULT_MAX_UPLOAD_MB = "127.0.0.1", 8000, 5.0
STATUS = {NotAnImage: 415, TooManyPixels: 413, BlankImage: 422}  # any other ImageError (truncated): 400
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
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on; 0.0.0.0 opens it to other machines")
    parser.add_argument("--port", type=port_number, default=DEFAULT_PORT, help="TCP port")
    parser.add_argument(
        "--max-upload-mb",
        type=positive(float),
        default=DEFAULT_MAX_UPLOAD_MB,
        help="larger uploads are refused (HTTP 413)",
    )


def run(args):
    serve(args.model, args.host, args.port, args.max_upload_mb)


class TopDigit(BaseModel):
    digit: int
    probability: float  # %


class Prediction(BaseModel):
    digit: int
    confidence: float  # %
    probabilities: list[float]  # % for each digit 0..9
    top3: list[TopDigit]
    image: list[list[int]]  # the 28x28 image the model saw, 0 (background) to 255 (ink)


class Health(BaseModel):
    status: str
    model: str
    architecture: str
    parameters: int


def create_app(model, model_path, max_upload_bytes):
    app = FastAPIOffline(
        title="MNIST digit reader", summary="Draw a digit or send an image; a <25k-parameter CNN reads it."
    )
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    batcher = Batcher(model)
    from model import count_parameters

    health = Health(status="ok", model=str(model_path), architecture=model.arch, parameters=count_parameters(model))

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC_DIR / "index.html")

    @app.get("/api/health")
    def get_health() -> Health:
        return health

    @app.post(
        "/api/predict",
        openapi_extra={"requestBody": REQUEST_BODY},
        responses={status: {"description": "the image cannot be read"} for status in (400, 413, 415, 422)},
    )
    async def predict(request: Request) -> Prediction:
        """The digit in one image, the ten probabilities, and the 28x28 image the model saw."""
        data = await read_image(request, max_upload_bytes)
        try:  # in a worker thread: the event loop keeps answering other requests meanwhile
            prepared = await run_in_threadpool(prepared_image, io.BytesIO(data))
        except ImageError as error:
            raise HTTPException(STATUS.get(type(error), 400), str(error)) from None
        result = await batcher.read(prepared)
        return Prediction(**result, image=(prepared * 255).round().int().tolist())

    return app


class Batcher:
    """Reads the images of all the requests waiting for the model in one forward pass.

    While the model works on one batch (in a worker thread), the images of new requests gather, and
    the next batch takes them all: under load a batch holds about as many images as there are
    clients, and one image alone waits for nothing.
    """

    def __init__(self, model):
        self.model = model
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
                    readings = await run_in_threadpool(read_digits, self.model, images)
                except Exception as error:  # noqa: BLE001  each waiting request answers with it
                    for _, future in batch:
                        future.set_exception(error)
                    continue
                for (_, future), reading in zip(batch, readings, strict=True):
                    future.set_result(reading)
        finally:
            self.busy = False


async def read_image(request, limit):
    """The uploaded image's bytes; refuses a body over limit bytes as soon as it is known to be."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large(limit)
    content_type = request.headers.get("content-type", "")
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


def serve(model_path, host, port, max_upload_mb):
    """Load the model (its errors come before the port opens), then serve until Ctrl-C."""
    import torch

    from checkpoint import load_model

    model = load_model(model_path)
    # Requests are prepared side by side in worker threads while the model reads a batch in another;
    # one intra-op thread each keeps them from fighting over the cores (docs/serving.md).
    torch.set_num_threads(1)
    app = create_app(model, model_path, int(max_upload_mb * 2**20))
    print(f"serving {model_path} at http://{host}:{port} (API docs at /docs); Ctrl-C stops", flush=True)
    uvicorn.run(app, host=host, port=port, access_log=False)  # a line per request would drown the rest
