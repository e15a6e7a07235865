"""`python main.py bench abuse`: the real server under hostile load on loopback (large uploads,
decompression bombs, slow and trickling clients, SIGTERM mid-upload), with /api/health's latency and the memory
of the server and its decoding workers watched from a process of their own (docs/serving.md)."""

import asyncio
import contextlib
import io
import json
import os
import signal
import socket
import statistics
import struct
import time
import zlib
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import httpx
from PIL import Image

from checkpoint import write_json
from serve_bench import digit_pngs, free_port, start_server

ABUSE = {"uploads": 300, "upload_mb": 4, "white_pngs": 8, "white_side": 7000, "slow_clients": 50, "timeout_s": 30,
         "bombs_each": 8, "bomb_side": 7000, "slow_uploads": 32}  # fmt: skip
QUICK_ABUSE = {"uploads": 40, "upload_mb": 1, "white_pngs": 2, "white_side": 3000, "slow_clients": 4, "timeout_s": 2,
               "bombs_each": 2, "bomb_side": 2000, "slow_uploads": 4}  # fmt: skip
BOMB_KINDS = ("rgba", "palette", "grey16", "webp", "ico")
PNG_KINDS = {"grey": (0, 8, 1), "rgba": (6, 8, 4), "palette": (3, 8, 1), "grey16": (0, 16, 1)}  # type, depth, bands
ANSWERED = {200, 413, 422, 503}  # what every upload and white PNG must get
POLL_SECONDS = 0.05  # health checks and memory samples, throughout


def noise_png(megabytes):
    """A valid PNG of random colour noise, about `megabytes` MB (noise does not compress)."""
    import numpy as np

    side = int((megabytes * 2**20 / 3) ** 0.5)
    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def huge_png(width, height, kind="grey"):
    """A valid PNG of width x height of one colour (black; a palette's one entry), in a few kilobytes: its rows are
    compressed one by one, never held whole."""

    def chunk(name, body):
        return struct.pack(">I", len(body)) + name + body + struct.pack(">I", zlib.crc32(name + body))

    colour_type, depth, bands = PNG_KINDS[kind]
    compressor, row = zlib.compressobj(9), b"\0" * (width * bands * depth // 8 + 1)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    palette = chunk(b"PLTE", b"\0\0\0") if kind == "palette" else b""
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + palette + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def bomb(kind, side):
    """An upload that decodes to side x side pixels: PNGs of each colour kind, a lossless WebP, and an ICO whose
    directory says 16x16 while the PNG inside is side x side."""
    if kind in PNG_KINDS:
        return huge_png(side, side, kind)
    if kind == "webp":
        buffer = io.BytesIO()
        Image.new("L", (side, side), 255).save(buffer, "WEBP", lossless=True, quality=0)
        return buffer.getvalue()
    png = huge_png(side, side, "grey")
    entry = struct.pack("<BBBBHHII", 16, 16, 0, 0, 1, 32, len(png), 6 + 16)
    return struct.pack("<HHH", 0, 1, 1) + entry + png


def white_png(side):
    buffer = io.BytesIO()
    Image.new("L", (side, side), 255).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def resident_mib(pid):
    """The resident memory of a process and of every process under it (the server's image decoders)."""
    total = 0.0
    for process in family(pid):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # a process that has just ended
            for line in Path(f"/proc/{process}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
    return total


def family(pid):
    """A process and every process under it, by pid (Linux: /proc)."""
    found, pending = [], [pid]
    while pending:
        pid = pending.pop()
        found.append(pid)
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                pending += map(int, (task / "children").read_text().split())
    return found


async def slow_client(url, body_too):
    """Sends a request a byte a second, headers only or a body too, until the server closes on it."""
    from urllib.parse import urlsplit

    address = urlsplit(url)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    head = b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\nContent-Length: 1000\r\n\r\n"
    started = time.perf_counter()
    try:
        if body_too:
            writer.write(head)
            await writer.drain()
        for byte in b"x" * 1000 if body_too else head:
            if reader.at_eof():
                break
            writer.write(bytes([byte]))
            await writer.drain()
            try:
                answer = await asyncio.wait_for(reader.read(100), timeout=1)
            except TimeoutError:
                continue
            return answer.split(b"\r\n", 1)[0].decode() or "closed", time.perf_counter() - started
    except ConnectionError:
        return "closed", time.perf_counter() - started
    finally:
        writer.close()
    return "never cut off", time.perf_counter() - started


def watch(url, server_pid, windows, results):
    """In a process of its own, so that the load's clients do not delay it: for each window (a start message on
    windows, then a stop), /api/health's latency and the server's resident memory every POLL_SECONDS."""
    with httpx.Client(timeout=10) as http:
        while windows.get() == "start":
            health_ms, memory = [], []
            while windows.empty():
                start = time.perf_counter()
                http.get(f"{url}/api/health").raise_for_status()
                health_ms.append((time.perf_counter() - start) * 1000)
                memory.append(resident_mib(server_pid))
                time.sleep(POLL_SECONDS)
            windows.get()
            results.put((health_ms, memory))


async def hostile_load(url, load):
    """The uploads, the decompression-heavy PNGs and the slow clients, all at once; returns their outcomes."""
    upload, white = noise_png(load["upload_mb"]), white_png(load["white_side"])

    async def post(http, body):
        try:
            async with http.post(f"{url}/api/predict", data=body, headers={"content-type": "image/png"}) as response:
                await response.read()
                return response.status
        except aiohttp.ClientError as error:
            return type(error).__name__

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=300)) as http:
        slow = [asyncio.create_task(slow_client(url, i % 2 == 1)) for i in range(load["slow_clients"])]
        start = time.perf_counter()
        statuses = await asyncio.gather(
            *(post(http, white) for _ in range(load["white_pngs"])),
            *(post(http, upload) for _ in range(load["uploads"])),
        )
        seconds = time.perf_counter() - start
        slow = await asyncio.gather(*slow)
    return statuses, seconds, slow


async def bomb_load(url, load):
    """load["bombs_each"] uploads of each BOMB_KINDS at once; {kind: Counter of statuses}."""
    bodies = {kind: bomb(kind, load["bomb_side"]) for kind in BOMB_KINDS}
    async with httpx.AsyncClient(timeout=120) as http:

        async def post(kind):
            try:
                headers = {"content-type": "image/png"}
                answer = await http.post(f"{url}/api/predict", content=bodies[kind], headers=headers)
                return kind, answer.status_code
            except httpx.HTTPError as error:
                return kind, type(error).__name__

        outcomes = await asyncio.gather(*(post(kind) for kind in BOMB_KINDS for _ in range(load["bombs_each"])))
    return {kind: dict(Counter(str(status) for k, status in outcomes if k == kind)) for kind in BOMB_KINDS}


def slow_upload(url):
    """A connection that has sent a request head and the first byte of a 100 KB body, and nothing more."""
    address = urlsplit(url)
    connection = socket.create_connection((address.hostname, address.port))
    connection.sendall(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                       b"Content-Length: 100000\r\n\r\nx")  # fmt: skip
    return connection


def predict_while_slow_uploads_held(url, png, count):
    """A real client's prediction while `count` uploads trickle in a byte at a time: (status, seconds)."""
    slow = [slow_upload(url) for _ in range(count)]
    try:
        time.sleep(0.5)
        start = time.perf_counter()
        answer = httpx.post(f"{url}/api/predict", content=png, headers={"content-type": "image/png"}, timeout=30)
        return answer.status_code, round(time.perf_counter() - start, 3)
    finally:
        for connection in slow:
            connection.close()


class Watcher:
    """watch() in its own process, started before the load's clients lower their priority, so that it measures
    the server as a client at the server's priority sees it, not queued behind the server on a busy machine."""

    def __init__(self, url, server_pid):
        import multiprocessing

        self.windows, self.results = multiprocessing.Queue(), multiprocessing.Queue()
        self.process = multiprocessing.Process(target=watch, args=(url, server_pid, self.windows, self.results))
        self.process.start()

    def measure(self, work):
        """work()'s result, and /api/health's latency and the server's memory while it ran (hostile_figures' keys)."""
        self.windows.put("start")
        try:
            outcome = work()
        finally:
            self.windows.put("stop")
            health_ms, memory = self.results.get(timeout=60)
        return outcome, health_figures(health_ms), round(max(memory))

    def close(self):
        self.windows.put("done")
        self.process.join(timeout=60)


def health_figures(health_ms):
    return {
        "count": len(health_ms),
        "p50": round(statistics.median(health_ms), 1),
        "p99": round(sorted(health_ms)[int(0.99 * (len(health_ms) - 1))], 1),
        "max": round(max(health_ms), 1),
        "over_100": sum(ms > 100 for ms in health_ms),
    }


def hostile_figures(load, statuses, seconds, slow, health_ms, memory):
    whites = load["white_pngs"]
    return {
        "load": load,
        "white_png_statuses": dict(Counter(map(str, statuses[:whites]))),
        "upload_statuses": dict(Counter(map(str, statuses[whites:]))),
        "all_answered": set(statuses) <= ANSWERED,
        "uploads_seconds": round(seconds, 1),
        "slow_clients": dict(Counter(answer for answer, _ in slow)),
        "slow_clients_cut_off_after_seconds_max": round(max(seconds for _, seconds in slow), 1),
        "health_ms": health_ms,
        "server_resident_mib_max": memory,
    }


def abuse_benchmark(model_path, data_dir, out_dir, quick=False):
    """The server under 300 large uploads, 8 decompression-heavy PNGs and 50 slow clients; then 8 uploads of each
    kind of decompression bomb at once; then a prediction while 32 uploads trickle in; then SIGTERM with a client
    mid-upload; writes serve_abuse.json in out_dir (None: nowhere)."""
    pngs, labels = digit_pngs(data_dir, 1)
    load = QUICK_ABUSE if quick else ABUSE
    server, url = start_server(model_path, free_port(), "--request-timeout", str(load["timeout_s"]))
    try:
        watcher = Watcher(url, server.pid)
        os.nice(10)  # the load's clients share the server's cores here: the server and the watcher go first
        try:
            outcomes, health_ms, memory = watcher.measure(lambda: asyncio.run(hostile_load(url, load)))
            results = hostile_figures(load, *outcomes, health_ms, memory)
            statuses, health_ms, memory = watcher.measure(lambda: asyncio.run(bomb_load(url, load)))
        finally:
            watcher.close()
        results["bombs"] = {
            "each": load["bombs_each"], "side": load["bomb_side"], "statuses": statuses, "health_ms": health_ms,
            "server_resident_mib_max": memory,
        }  # fmt: skip
        status, seconds = predict_while_slow_uploads_held(url, pngs[0], load["slow_uploads"])
        results["prediction_while_slow_uploads_held"] = {
            "slow_uploads": load["slow_uploads"], "status": status, "seconds": seconds,
        }  # fmt: skip
        after = httpx.post(f"{url}/api/predict", content=pngs[0], headers={"content-type": "image/png"}, timeout=30)
        results["predicts_after"] = after.status_code == 200 and after.json()["digit"] == labels[0]
        mid_upload = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))
        mid_upload.sendall(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\nxx")
        time.sleep(0.2)
        start = time.perf_counter()
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=60)
        results["sigterm_stop_seconds"] = round(time.perf_counter() - start, 2)
        results["tracebacks_in_log"] = stderr.count("Traceback")
        results["log_tail"] = stderr.strip().splitlines()[-3:]
        mid_upload.close()
    finally:
        if server.poll() is None:
            server.kill()
    print(json.dumps(results, indent=2))
    if out_dir is not None:
        out = Path(out_dir) / "serve_abuse.json"
        write_json(out, results)
        print(f"wrote {out}")
    return results
