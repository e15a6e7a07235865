"""The server's image decoding: an upload read into the 28x28 image the model sees (predict's read_ink and prepare),
in a thread of the server when its header says it is small, else in a worker process of its own, whose memory and
time never hold up the server (docs/serving.md)."""

import asyncio
import contextlib
import ctypes
import io
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from predict import WORKING_SIDE, header_pixels, prepare, prepared_image, read_ink

# Images over IN_PROCESS_PIXELS decode DECODE_PROCESSES at a time, each in a worker process: such a decode may take
# a few hundred MB for a moment, and in a thread of the server it held the event loop up to 180 ms (docs/serving.md).
IN_PROCESS_PIXELS = WORKING_SIDE**2
DECODE_PROCESSES = 2
DECODE_NICENESS = 10  # the decoding processes give way to the event loop on busy cores
# A worker imports this module and predict, never FastAPI (0.3 s and tens of MB); the server listens once every worker
# is ready.
WORKER_START_SECONDS = 60
PR_SET_PDEATHSIG = 1  # Linux prctl: the signal a process gets when the thread that started it ends


class Decoder:
    """Uploads read into 28x28 images. An image of at most IN_PROCESS_PIXELS (by its header) is decoded in a thread
    of the server; a larger one, whose decode may take hundreds of MB, in one of DECODE_PROCESSES worker processes,
    started with the server. A worker that dies (killed for memory, say) is replaced, and the uploads it held
    are answered 503."""

    def __init__(self):
        self.pool = None

    async def prepared(self, data):
        from fastapi.concurrency import run_in_threadpool  # here, not above: a worker imports this module

        if header_pixels(io.BytesIO(data)) <= IN_PROCESS_PIXELS:
            return await run_in_threadpool(prepared_image, io.BytesIO(data))
        return await run_in_threadpool(prepare, await self.ink_in_worker(data))

    async def ink_in_worker(self, data):
        from fastapi import HTTPException

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
