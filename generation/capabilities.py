"""What this process's workers can run: the task types whose libraries are installed
and whose models are here. A worker registering itself as a server offers these
(servers.middleware.worker_capabilities, installed by generation.apps)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from django.conf import settings

from generation.specs import TASK_TYPES


def worker_capabilities() -> list[str]:
    """The task types this machine can run: those whose libraries are installed and
    whose model folder it has, or whose model depends on each job's params or that need
    none (face swap; upscale, which can always run its lanczos method)."""
    configured = settings.GENERATION["MODELS"]

    def has_model(name: str) -> bool:
        return bool(configured.get(name)) and Path(configured[name]).exists()

    return [
        spec.name
        for spec in TASK_TYPES.values()
        if all(library_installed(library) for library in spec.libraries)
        and (spec.model_for is not None or has_model(spec.name))
    ]


def library_installed(name: str) -> bool:
    """Whether `import name` would find it, without importing it (torch takes seconds)."""
    if name in sys.modules:
        return sys.modules[name] is not None
    return importlib.util.find_spec(name) is not None
