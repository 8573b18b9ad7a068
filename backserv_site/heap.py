"""Keeping the garbage collector's full passes short in long-lived processes.

A full (generation 2) collection walks every object the process tracks. Most of them
live as long as the process: modules, Django's and DRF's machinery, and in a worker
torch, the libraries and the loaded models. Frozen, they are left out of those passes
(still freed by reference counting), which then walk only what came after (what that
saves: bench/README.md, "Measurements behind the design")."""

from __future__ import annotations

import gc


def settle_heap(*, released: bool = False) -> None:
    """Collect once, then freeze what is left in memory. `released`: long-lived objects
    were dropped (an evicted model), so the frozen ones go back to the collector first,
    and the dropped ones' reference cycles are collected too."""
    if released:
        gc.unfreeze()
    gc.collect()
    gc.freeze()


def settle_after_startup() -> None:
    """A web process, once its application is built: every view imported now rather
    than on the first request, then the heap settled."""
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018  (imports the URLconf and every view)
    settle_heap()
