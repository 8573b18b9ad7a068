"""The per-process model cache keeps what it loads out of the garbage collector's full
passes, and gives an evicted model back to it."""

from __future__ import annotations

import gc
import sys
import types
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from generation.models_cache import PipelineCache


class _Pipeline:
    """A loaded model that, like many, refers to itself (a module and its hooks)."""

    def __init__(self) -> None:
        self.me = self


@dataclass(frozen=True)
class _Spec:
    """What the cache reads of a task type: a pipeline module with no model folder."""

    name: str
    pipeline_module: str

    def model_key(self, params: dict[str, Any]) -> str:
        return ""


@pytest.fixture
def specs() -> Iterator[tuple[_Spec, _Spec]]:
    names = ("tests_fake_pipeline_a", "tests_fake_pipeline_b")
    for name in names:
        module = types.ModuleType(name)
        module.load = lambda path, device, dtype: _Pipeline()  # type: ignore[attr-defined]
        sys.modules[name] = module
    yield _Spec("first", names[0]), _Spec("second", names[1])
    for name in names:
        del sys.modules[name]
    gc.unfreeze()


def test_a_load_leaves_what_is_in_memory_out_of_full_collections(specs: tuple[_Spec, _Spec]) -> None:
    gc.unfreeze()
    cache = PipelineCache(capacity=2)
    with cache.use(specs[0], {}) as pipeline:
        assert isinstance(pipeline, _Pipeline)
    # The loaded model is frozen with everything else in memory: a full pass skips it.
    assert gc.get_freeze_count() > 0
    assert not any(obj is pipeline for obj in gc.get_objects(generation=2))


def test_an_evicted_model_is_collected_though_it_refers_to_itself(specs: tuple[_Spec, _Spec]) -> None:
    cache = PipelineCache(capacity=1)
    with cache.use(specs[0], {}) as pipeline:
        dropped = weakref.ref(pipeline)
    del pipeline
    assert dropped() is not None  # cached, and frozen
    with cache.use(specs[1], {}):
        pass
    # Evicting the first model gave it back to the collector: its cycle is gone.
    assert dropped() is None
