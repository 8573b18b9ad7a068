"""Loaded pipelines, kept per process so only the first job on a model pays the load."""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from backserv_site.heap import settle_heap
from generation.acceleration import warm_up
from generation.specs import TaskTypeSpec
from tasks import metrics

logger = logging.getLogger(__name__)


@dataclass
class _Entry:
    pipeline: Any
    # Diffusers pipelines keep per-call state (the scheduler's timesteps): one job at a
    # time per loaded model. On a GPU that is also the fastest way to use it.
    lock: threading.Lock = field(default_factory=threading.Lock)


def _quiet_libraries() -> None:
    # Progress bars on every load would flood worker logs.
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()


def device_and_dtype() -> tuple[str, Any]:
    """The device jobs run on and its dtype. On the CPU, torch's threads are set first
    (see cpu_threads)."""
    import torch

    device = settings.GENERATION["DEVICE"] or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        threads = cpu_threads()
        if threads is not None and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    return device, dtype


def cpu_threads() -> int | None:
    """How many threads torch computes with on the CPU: GENERATION["CPU_THREADS"], or
    for 0 one fewer than this process's cores (at least one); None leaves torch to
    OMP_NUM_THREADS where that is set.

    torch takes every core by default, and its threads wait for each other at every
    operation: when the API or the database takes one of the cores, every operation
    waits for the thread that lost it (measured: bench/README.md, "Measurements behind
    the design")."""
    configured = settings.GENERATION["CPU_THREADS"]
    if configured > 0:
        return configured
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    return max(_cores() - 1, 1)


def _cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS has no affinity
        return os.cpu_count() or 1


def model_path(model_key: str) -> Path:
    configured = settings.GENERATION["MODELS"].get(model_key)
    if not configured:
        raise LookupError(f"No model directory is configured for {model_key} (MODEL_{model_key.upper()}).")
    return Path(configured)


class PipelineCache:
    def __init__(self, capacity: int):
        self.capacity = max(1, capacity)
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0

    def preload(self, spec: TaskTypeSpec) -> None:
        """Load a task type whose model does not depend on a job's params."""
        self._entry(spec, {})

    @contextmanager
    def use(self, spec: TaskTypeSpec, params: dict[str, Any]) -> Iterator[Any]:
        """The loaded pipeline for a job's params, held exclusively while the block runs."""
        entry = self._entry(spec, params)
        with entry.lock:
            yield entry.pipeline

    def _entry(self, spec: TaskTypeSpec, params: dict[str, Any]) -> _Entry:
        model_key = spec.model_key(params)
        # A pipeline without a model folder (lanczos, the built-in face detector) still
        # loads once: its load() prepares what it needs.
        path = model_path(model_key) if model_key else None
        key = (spec.pipeline_module, str(path or ""))
        # Loading under the cache lock: two threads asking for a new model at once must
        # not load it twice (a real model is gigabytes).
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry
            module = importlib.import_module(spec.pipeline_module)
            _quiet_libraries()
            device, dtype = device_and_dtype()
            started = time.monotonic()
            entry = _Entry(pipeline=module.load(path, device, dtype))
            # Graphs are captured now, under the cache lock like the load: the first
            # job of the default size must not pay for them.
            warm_up(module, entry.pipeline, device)
            seconds = time.monotonic() - started
            self.loads += 1
            metrics.model_loads.labels(spec.name).inc()
            metrics.model_load_seconds.labels(spec.name).observe(seconds)
            logger.info(
                "loaded %s from %s on %s in %.2fs",
                spec.name,
                path or "(built in)",
                device,
                seconds,
                extra={"task_type": spec.name, "device": device, "load_s": round(seconds, 3)},
            )
            self._entries[key] = entry
            evicting = len(self._entries) > self.capacity
            while len(self._entries) > self.capacity:
                # Not bound to a name: the evicted model must be unreachable when the
                # heap is settled below.
                evicted = self._entries.popitem(last=False)[0]
                logger.info("unloaded %s from %s", *evicted)
            # What the load left in memory is frozen: a worker's full garbage collections
            # otherwise walked it all, 300 ms with the GIL held (backserv_site.heap).
            settle_heap(released=evicting)
            return entry


_cache: PipelineCache | None = None
_cache_lock = threading.Lock()


def pipeline_cache() -> PipelineCache:
    global _cache
    with _cache_lock:
        if _cache is None:
            _cache = PipelineCache(settings.GENERATION["PIPELINE_CACHE_SIZE"])
        return _cache


def preload_models() -> list[str]:
    """Load the configured models (as many as the cache holds) so the first job does not
    pay for importing torch and loading weights."""
    from generation.specs import TASK_TYPES

    cache = pipeline_cache()
    loaded: list[str] = []
    for spec in TASK_TYPES.values():
        if len(loaded) >= cache.capacity:
            break
        if spec.model_for is not None:
            # Which model (if any) depends on each job's params: nothing to load ahead.
            continue
        try:
            path = model_path(spec.name)
        except LookupError:
            continue
        if not path.exists():
            continue
        try:
            cache.preload(spec)
        except Exception:
            logger.exception("could not preload %s from %s; jobs of this type will fail until fixed", spec.name, path)
            continue
        loaded.append(spec.name)
    return loaded
