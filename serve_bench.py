"""`python main.py bench serve`: predictions per second over HTTP against in-process `predict`.

Both read the same PNG files (test digits drawn dark on white at 112x112, as a user's scan would be).
The server is the real `python main.py serve` process on a free loopback port; the clients are
concurrent httpx connections in this process.
"""

import asyncio
import io
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp
import httpx
from PIL import Image

from checkpoint import load_model, write_json
from data import load_split, pixels
from predict import classify

MAIN = Path(__file__).with_name("main.py")
START_TIMEOUT_SECONDS = 60
UPSCALE = 4  # 28x28 test digits become 112x112 files


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(model_path, port, *options):
    """The real `python main.py serve` process, once /api/health answers; stop it with stop_server."""
    server = subprocess.Popen(
        [sys.executable, str(MAIN), "serve", "--model", str(model_path), "--port", str(port), *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        process_group=0,  # the server and its decoders, as a terminal's Ctrl-C reaches them: os.killpg(server.pid)
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline and server.poll() is None:
        try:
            httpx.get(f"{url}/api/health", timeout=1).raise_for_status()
            return server, url
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError(f"the server did not start: {server.communicate()[1][-2000:]}")


def stop_server(server):
    """Ctrl-C, as a user stops it; returns (exit code, stdout, stderr)."""
    server.send_signal(signal.SIGINT)
    stdout, stderr = server.communicate(timeout=30)
    return server.returncode, stdout, stderr


def digit_pngs(data_dir, count):
    """The first `count` test digits as PNG files' bytes, and their labels."""
    images, labels = load_split(data_dir, "test")
    pngs = []
    for image in images[:count]:
        paper = Image.fromarray((255 - pixels(image)[0] * 255).round().byte().numpy())
        buffer = io.BytesIO()
        paper.resize((28 * UPSCALE, 28 * UPSCALE), Image.Resampling.BICUBIC).save(buffer, "PNG")
        pngs.append(buffer.getvalue())
    return pngs, labels[:count].tolist()


async def http_load(url, bodies, clients, requests):
    """POST `requests` predictions, bodies taken in turn, from `clients` concurrent connections.

    Returns the answers' statuses and digits in request order, and the throughput and latencies. The
    clients share this machine's cores with the server, so they use aiohttp, whose client costs a
    fraction of httpx's CPU time per request.
    """
    answers = [None] * requests
    pending = iter(range(requests))  # shared: each request is taken by exactly one client
    clients = min(clients, requests)  # one more would send nothing: no load, and not counted as load

    async def client(http):
        for i in pending:
            start = time.perf_counter()
            async with http.post(
                f"{url}/api/predict", data=bodies[i % len(bodies)], headers={"content-type": "image/png"}
            ) as response:
                answer = await response.json()
            answers[i] = (response.status, answer.get("digit"), time.perf_counter() - start)

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        seconds = time.perf_counter() - start
    milliseconds = sorted(latency * 1000 for *_, latency in answers)
    statuses = Counter(status for status, *_ in answers)
    return {
        "requests": requests,
        "clients": clients,
        "statuses": dict(statuses),
        "digits": [digit for _, digit, _ in answers],
        "requests_per_second": round(requests / seconds, 1),
        "predictions_per_second": round(statuses[200] / seconds, 1),  # a refusal (503, busy) answers no digit
        "latency_ms": {
            "p50": round(statistics.median(milliseconds), 2),
            "p99": round(milliseconds[min(len(milliseconds) - 1, round(0.99 * len(milliseconds)))], 2),
            "max": round(milliseconds[-1], 2),
        },
    }


def in_process_rate(model, bodies):
    """Predictions per second of predict.classify on the same files' bytes, one after another."""
    classify(model, io.BytesIO(bodies[0]))  # warm-up
    start = time.perf_counter()
    for body in bodies:
        classify(model, io.BytesIO(body))
    return round(len(bodies) / (time.perf_counter() - start), 1)


def serve_benchmark(model_path, data_dir, out_dir, images, requests, clients):
    pngs, _ = digit_pngs(data_dir, images)
    in_process = in_process_rate(load_model(model_path), pngs)
    server, url = start_server(model_path, free_port())
    try:
        load = asyncio.run(http_load(url, pngs, clients, requests))
    finally:
        stop_server(server)
    load.pop("digits")
    results = {
        "model": str(model_path),
        "in_process_predictions_per_second": in_process,
        "served": load,
        "served_vs_in_process": round(load["predictions_per_second"] / in_process, 3),
        "cpu_count": os.cpu_count(),
    }
    latency = load["latency_ms"]
    refused = load["requests"] - load["statuses"].get(200, 0)
    print(
        f"in-process predict: {in_process:,.0f} images/s; served over HTTP with {load['clients']} clients: "
        f"{load['predictions_per_second']:,.0f} predictions/s ({results['served_vs_in_process']:.2f}x), "
        f"latency p50 {latency['p50']} ms, p99 {latency['p99']} ms; statuses {load['statuses']}"
        + (f": {refused:,} of {load['requests']:,} requests answered no digit, not counted" if refused else "")
    )
    if out_dir is not None:
        out = Path(out_dir) / "serve_benchmark.json"
        write_json(out, results)
        print(f"wrote {out}")
    return results
