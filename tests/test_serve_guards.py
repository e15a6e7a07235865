"""serve_guards.py, the server's limits on hostile clients: request heads, hosts, security headers, slow and
vanishing clients, overload, refused uploads, HTTP's framing."""

import signal
import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest

from tests.helpers import post_image


def raw_exchange(url, request, wait=10):
    """Send raw bytes to the server and return all it answers before closing (or wait seconds pass); a server
    that refuses a request midway may reset the connection, which ends the answer too."""
    address = urlsplit(url)
    answer = b""
    with socket.create_connection((address.hostname, address.port), timeout=wait) as connection:
        try:
            connection.sendall(request)
            while chunk := connection.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    return answer


def test_an_oversized_request_head_is_refused(server):
    big = b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n"
    answer = raw_exchange(server, big)
    assert answer.startswith(b"HTTP/1.1 400") or answer == b""  # refused, or cut off while still sending
    small = b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    assert raw_exchange(server, small).startswith(b"HTTP/1.1 200")  # and the server goes on


def test_an_unknown_host_header_is_refused(api):
    assert api.get("/api/health", headers={"host": "attacker.example"}).status_code == 400
    assert api.get("/api/health", headers={"host": "localhost"}).status_code == 200


@pytest.mark.parametrize("path", ["/", "/docs", "/api/health", "/static/app.js", "/no-such-page"])
def test_every_response_carries_the_security_headers(api, path):
    headers = api.get(path).headers
    assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
    policy = headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy and "http" not in policy


def test_redoc_which_loads_from_another_host_is_not_served(api):
    assert api.get("/redoc").status_code == 404


@pytest.fixture
def strict_server(untrained):
    """A server of its own with a 2-second --request-timeout, stopped by each test as it needs."""
    from serve_bench import free_port, start_server

    server, url = start_server(untrained, free_port(), "--request-timeout", "2")
    yield server, url
    if server.poll() is None:
        server.kill()
        server.communicate()


@pytest.mark.slow
def test_slow_and_vanishing_clients_are_cut_off_without_tracebacks(strict_server):

    server, url = strict_server
    # Headers a byte at a time: the connection is closed once the timeout has passed.
    start = time.monotonic()
    address = urlsplit(url)
    with socket.create_connection((address.hostname, address.port), timeout=20) as slow:
        for byte in b"GET /api/health HTTP/1.1\r\nHost: 127":
            try:
                slow.send(bytes([byte]))
            except OSError:
                break
            time.sleep(0.5)
            if time.monotonic() - start > 8:
                break
        assert slow.recv(1024) == b"" and time.monotonic() - start < 8
    # A body shorter than its Content-Length: answered 408.
    short = raw_exchange(url, b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                              b"Content-Length: 1000\r\n\r\n" + b"x" * 10)  # fmt: skip
    assert short.startswith(b"HTTP/1.1 408")
    # A client that leaves mid-upload.
    with socket.create_connection((address.hostname, address.port)) as leaving:
        leaving.sendall(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                        b"Content-Length: 100000\r\n\r\n" + b"x" * 5000)  # fmt: skip
        time.sleep(0.3)
    # SIGTERM with a client mid-upload: the server still stops, within its shutdown time.
    mid_upload = socket.create_connection((address.hostname, address.port))
    mid_upload.sendall(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                       b"Content-Length: 100000\r\n\r\n" + b"x" * 5000)  # fmt: skip
    time.sleep(0.3)
    stopping = time.monotonic()
    server.send_signal(signal.SIGTERM)
    _, stderr = server.communicate(timeout=30)
    mid_upload.close()
    assert time.monotonic() - stopping < 15
    assert "Traceback" not in stderr and "Exception in ASGI application" not in stderr, stderr


@pytest.mark.slow
def test_over_the_admission_limit_the_server_answers_503_at_once(strict_server):

    from serve_guards import MAX_UPLOADS

    _, url = strict_server
    address = urlsplit(url)
    waiting = []
    try:
        for _ in range(MAX_UPLOADS):  # each admitted, its body still arriving
            connection = socket.create_connection((address.hostname, address.port))
            connection.sendall(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                               b"Content-Length: 1000\r\n\r\nx")  # fmt: skip
            waiting.append(connection)
        time.sleep(0.5)
        answer = httpx.post(f"{url}/api/predict", content=b"x", headers={"content-type": "image/png"}, timeout=1)
        assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
        assert httpx.get(f"{url}/api/health", timeout=1).status_code == 200  # health is never turned away
    finally:
        for connection in waiting:
            connection.close()


@pytest.mark.slow
def test_slow_uploads_do_not_starve_predictions_and_are_cut_off(server, user_images):
    from abuse_bench import slow_upload
    from serve_guards import MAX_IN_FLIGHT, UPLOAD_GRACE_SECONDS

    slow = [slow_upload(server) for _ in range(MAX_IN_FLIGHT)]
    try:
        time.sleep(0.5)
        start = time.monotonic()
        answer = httpx.post(
            f"{server}/api/predict", content=user_images[0][0].read_bytes(), headers={"content-type": "image/png"},
            timeout=5,
        )  # fmt: skip
        assert answer.status_code == 200 and time.monotonic() - start < 5, answer.text
        # A byte a second is far under the minimum rate: each is answered 408 once the grace has passed.
        slow[0].settimeout(10)
        assert slow[0].recv(1024).startswith(b"HTTP/1.1 408")
        assert time.monotonic() - start < UPLOAD_GRACE_SECONDS + 3
    finally:
        for connection in slow:
            connection.close()


@pytest.mark.slow
def test_every_refused_upload_reads_its_answer(server):
    """100 uploads of 0.9 MB at once: those over the admission limit get a 503 they can read, not a reset."""
    from concurrent.futures import ThreadPoolExecutor

    body = b"x" * 900_000  # not an image: the admitted ones get 415

    def upload(_):
        try:
            return httpx.post(
                f"{server}/api/predict", content=body, headers={"content-type": "image/png"}, timeout=30
            ).status_code
        except httpx.HTTPError as error:
            return type(error).__name__

    with ThreadPoolExecutor(100) as pool:
        statuses = list(pool.map(upload, range(100)))
    assert set(statuses) <= {415, 503}, statuses
    assert 415 in statuses


def test_requests_are_read_as_http_says(api, server, user_images):
    png = user_images[0][0].read_bytes()
    assert post_image(api, png, "IMAGE/PNG").status_code == 200  # media types are case-insensitive
    request = api.build_request("POST", "/api/predict", files={"image": ("a.png", png)})
    content_type = request.headers["content-type"]
    request.headers["content-type"] = content_type.replace("multipart/form-data", "Multipart/Form-Data")
    assert api.send(request).status_code == 200
    for path in ("/", "/api/health"):
        assert api.head(path).status_code == 200
    # Both Content-Length and Transfer-Encoding: refused, and the connection closed (RFC 9112).
    smuggled = raw_exchange(
        server,
        b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    assert smuggled.startswith(b"HTTP/1.1 400") and b"connection: close" in smuggled.lower()
