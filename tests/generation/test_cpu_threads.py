"""How many threads torch computes with on the CPU (GENERATION["CPU_THREADS"])."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from generation import models_cache


@pytest.fixture
def torch_threads() -> Any:
    kept = torch.get_num_threads()
    yield
    torch.set_num_threads(kept)


def _generation(settings: Any, **values: Any) -> None:
    settings.GENERATION = {**settings.GENERATION, **values}


def test_by_default_one_core_is_left_to_the_api_and_the_database(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _generation(settings, CPU_THREADS=0)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(models_cache, "_cores", lambda: 8)
    assert models_cache.cpu_threads() == 7
    monkeypatch.setattr(models_cache, "_cores", lambda: 1)
    assert models_cache.cpu_threads() == 1


def test_the_setting_wins_and_omp_num_threads_wins_over_the_default(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    _generation(settings, CPU_THREADS=0)
    assert models_cache.cpu_threads() is None
    _generation(settings, CPU_THREADS=5)
    assert models_cache.cpu_threads() == 5


def test_the_cpu_device_sets_torch_to_them(settings: Any, torch_threads: None) -> None:
    _generation(settings, DEVICE="cpu", CPU_THREADS=1)
    torch.set_num_threads(2)
    assert models_cache.device_and_dtype() == ("cpu", torch.float32)
    assert torch.get_num_threads() == 1
