"""The server's guards against hostile clients (docs/serving.md), as ASGI middleware and helpers around uvicorn,
h11 and Starlette: at most MAX_UPLOADS uploads arrive at once (more get 503 at once, after a bounded drain of
their body so that the client reads it), each at MIN_UPLOAD_RATE or faster after UPLOAD_GRACE_SECONDS (else
408); a prediction slot (MAX_IN_FLIGHT) is taken only once a body has arrived, so slow uploads cannot starve
predictions; a request head must fit in HEADER_LIMIT_BYTES, and it and then the body must each arrive within
the request timeout; a request carrying both Content-Length and Transfer-Encoding is refused and its connection
closed (RFC 9112); every response carries the security headers."""

import asyncio
import contextlib
import json

from fastapi import HTTPException, Request
from starlette.requests import ClientDisconnect
from uvicorn.protocols.http.h11_impl import H11Protocol

DEFAULT_REQUEST_TIMEOUT = 30.0  # seconds a request's head, and then its body, may take to arrive
MAX_IN_FLIGHT = 32  # predictions at once (decoding or at the model, their body arrived); more get 503
MAX_UPLOADS = 64  # requests to /api/predict at once, bodies arriving included; more get 503 before routing
MIN_UPLOAD_RATE = 16 * 1024  # bytes a second an upload must keep up after UPLOAD_GRACE_SECONDS, else 408
UPLOAD_GRACE_SECONDS = 2.0
DRAIN_BYTES, DRAIN_SECONDS = 8 * 2**20, 1.0  # read of a refused body before closing, so that the client sees the 503
HEADER_LIMIT_BYTES = 64 * 1024  # larger request heads are refused (400) by h11
PAGE_POLICY = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
# Swagger UI starts itself with an inline script and styles: still nothing from another origin.
DOCS_POLICY = PAGE_POLICY + "; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'"
SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY")]
UPLOAD_HELP = "send one image: multipart field 'image', or the raw bytes with an image/* content type"


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


async def read_image(request, limit, timeout):
    """The uploaded image's bytes; refuses a body over limit bytes as soon as it is known to be, and one that
    has not arrived within timeout seconds."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity":  # read as it is, a gzipped image was "not an image"
        raise HTTPException(415, f"content encoding {encoding} is not read: send the image's bytes as they are")
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
