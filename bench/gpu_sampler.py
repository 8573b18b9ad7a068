"""GPU figures: NVML's utilization and used memory, sampled on a thread of the bench's
own process and averaged over each measured span."""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from typing import Any


class GpuSampler:
    """NVML's utilization and used memory of GPU 0, read every `interval` seconds on a
    thread of this process. Unavailable (no pynvml, no GPU): every figure is None."""

    def __init__(self, *, enabled: bool, interval: float = 0.05) -> None:
        self.interval = interval
        self.samples: list[tuple[float, int, int]] = []  # (time.time(), util %, used bytes)
        self.name: str | None = None
        self.note: str | None = None
        self._handle: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if not enabled:
            self.note = "no GPU sampling (--smoke runs on the CPU)"
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            name = pynvml.nvmlDeviceGetName(self._handle)
            self.name = name.decode() if isinstance(name, bytes) else str(name)
            self._nvml = pynvml
        except Exception as error:
            self.note = f"no GPU sampling: {type(error).__name__}: {error}"
            self._handle = None

    @property
    def available(self) -> bool:
        return self._handle is not None

    def start(self) -> None:
        if self.available:
            self._thread = threading.Thread(target=self._sample, name="nvml-sampler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.available:
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()

    def _sample(self) -> None:
        nvml = self._nvml
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                utilization = nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu
                used = nvml.nvmlDeviceGetMemoryInfo(self._handle).used
            except Exception:
                utilization = used = None
            if utilization is not None:
                self.samples.append((time.time(), int(utilization), int(used)))
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _inside(self, span: list[float] | None) -> list[tuple[float, int, int]]:
        if span is None:
            return []
        return [sample for sample in list(self.samples) if span[0] <= sample[0] <= span[1]]

    def busy(self, span: list[float] | None) -> float | None:
        inside = self._inside(span)
        return round(statistics.fmean(sample[1] for sample in inside), 1) if inside else None

    def memory_peak_mb(self, span: list[float] | None = None) -> int | None:
        samples = self._inside(span) if span is not None else list(self.samples)
        return round(max(sample[2] for sample in samples) / 2**20) if samples else None

    def summary(self) -> dict[str, Any]:
        """The sampling as a whole, for the report."""
        return {
            "sampled": self.available,
            "samples": len(self.samples),
            "memory_peak_mb": self.memory_peak_mb(),
            "note": self.note,
        }
