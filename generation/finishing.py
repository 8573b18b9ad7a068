"""A worker thread's second stage: what follows a pipeline call (encoding its images or
video, storing them, recording each job's outcome) runs on a thread of its own while
the worker thread claims and computes the next batch, so the GPU does not wait for it.

The worker thread hands a batch's finishing over only once the batch before it has
finished: at most one batch's images wait in memory, and a slow store slows the worker
instead of piling up behind it. Off (GENERATION OVERLAP_FINISHING), or on the CPU by
default, a batch finishes on the worker thread before the next claim, as it always did:
there the computing thread and the finishing one would share the same cores.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

from django.conf import settings
from django.db import connection

from backserv_site.db import connection_done
from generation.pipelines.base import Output

logger = logging.getLogger(__name__)

Work = Callable[[], None]


class InlineFinishing:
    """Each batch finishes on the worker thread, before the next claim."""

    def hand_off(self, work: Work) -> None:
        work()

    def close(self) -> None:
        pass


class OverlappedFinishing:
    """Each batch finishes on this stage's thread, while the next one computes."""

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None

    def hand_off(self, work: Work) -> None:
        self.wait()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="finishing")
        self._pending = self._executor.submit(_finish, work)

    def wait(self) -> None:
        """Until the batch handed over last has finished."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        self.wait()
        if self._executor is not None:
            # The stage thread's own connection: nothing else would close it.
            self._executor.submit(_close_connection).result()
            self._executor.shutdown()
            self._executor = None


def _close_connection() -> None:
    # `connection` names the calling thread's connection: looked up here, on the stage's.
    connection.close()


def _finish(work: Work) -> None:
    try:
        work()
    except Exception:
        # The work settles its own jobs' failures; this is a bug or the database gone.
        # Their leases lapse and the sweep gives them another attempt.
        logger.exception("finishing a batch failed")
    finally:
        connection_done()


@contextmanager
def finishing_stage() -> Iterator[InlineFinishing | OverlappedFinishing]:
    """The finishing stage of one worker thread's spell of runs; its end waits for the
    last batch to finish, so a message is done only when its jobs are settled."""
    stage = OverlappedFinishing() if overlap_enabled() else InlineFinishing()
    try:
        yield stage
    finally:
        stage.close()


def overlap_enabled() -> bool:
    configured = settings.GENERATION["OVERLAP_FINISHING"]
    if configured is not None:
        return bool(configured)
    from generation.models_cache import device_and_dtype

    return device_and_dtype()[0].startswith("cuda")


_encoders: ThreadPoolExecutor | None = None
_encoders_lock = threading.Lock()


def outputs_encode(outputs: list[Output]) -> None:
    """Encode a batch's outputs side by side: Pillow and PyAV let go of the GIL while
    they compress, and one 512 px PNG alone takes ~50 ms."""
    if len(outputs) < 2:
        for output in outputs:
            output.data  # noqa: B018  (encodes it)
        return
    for _ in _encoder_pool().map(lambda output: output.data, outputs):
        pass


def _encoder_pool() -> ThreadPoolExecutor:
    global _encoders
    with _encoders_lock:
        if _encoders is None:
            workers = min(8, max((os.cpu_count() or 1) - 1, 1))
            _encoders = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="encode")
        return _encoders
