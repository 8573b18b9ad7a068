"""The GPU speed-ups' decisions that hold on any machine: none is applied on the CPU,
the automatic batch size and channels-last choice, and outputs encoded once, lazily.
(The CUDA graphs themselves are measured on a GPU by bench/gpu.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from backserv_site.env import env_auto_bool, env_auto_int
from generation import acceleration
from generation.pipelines.base import Output


@pytest.fixture(autouse=True)
def _batch_size_decided_anew() -> Iterator[None]:
    acceleration.batch_size_forget()
    yield
    acceleration.batch_size_forget()


def test_the_automatic_batch_size_is_four_on_the_cpu_and_a_configured_one_wins(settings: Any) -> None:
    settings.GENERATION = {**settings.GENERATION, "DYNAMIC_BATCH_SIZE": None, "DEVICE": "cpu"}
    assert acceleration.dynamic_batch_size() == acceleration.CPU_BATCH == 4
    settings.GENERATION = {**settings.GENERATION, "DYNAMIC_BATCH_SIZE": 7}
    assert acceleration.dynamic_batch_size() == 7


@pytest.mark.parametrize(
    ("configured", "batch_size", "wanted"),
    [(None, 1, True), (None, 16, False), (True, 16, True), (False, 1, False)],
)
def test_channels_last_is_for_one_job_a_call_unless_configured(
    settings: Any, configured: bool | None, batch_size: int, wanted: bool
) -> None:
    settings.GENERATION = {**settings.GENERATION, "CHANNELS_LAST": configured, "DYNAMIC_BATCH_SIZE": batch_size}
    assert acceleration.channels_last_wanted() is wanted


def test_nothing_is_changed_on_the_cpu(demo_models: Path, settings: Any) -> None:
    from generation.pipelines import image_creation

    settings.GENERATION = {**settings.GENERATION, "CUDA_GRAPHS": True, "CHANNELS_LAST": True, "TORCH_COMPILE": True}
    pipeline = image_creation.load(demo_models / "tiny-sd", "cpu", None)
    assert not isinstance(pipeline.unet.forward, acceleration.GraphedForward)
    assert pipeline.unet.forward.__func__ is type(pipeline.unet).forward
    # Channels-last would leave the 4-D weights outside torch's plain layout.
    assert pipeline.unet.conv_in.weight.is_contiguous()


def test_an_output_is_encoded_once_and_only_when_read() -> None:
    calls: list[int] = []

    def encode() -> bytes:
        calls.append(1)
        return b"png bytes"

    output = Output(encode=encode, content_type="image/png", extension="png", width=1, height=1)
    assert calls == []
    assert output.data == output.data == b"png bytes"
    assert calls == [1]


@pytest.mark.parametrize(
    ("raw", "expected"), [(None, None), ("", None), ("auto", None), ("AUTO", None), ("1", True), ("off", False)]
)
def test_env_auto_bool(monkeypatch: pytest.MonkeyPatch, raw: str | None, expected: bool | None) -> None:
    if raw is None:
        monkeypatch.delenv("BACKSERV_TEST_SWITCH", raising=False)
    else:
        monkeypatch.setenv("BACKSERV_TEST_SWITCH", raw)
    assert env_auto_bool("BACKSERV_TEST_SWITCH") is expected


@pytest.mark.parametrize(("raw", "expected"), [(None, None), ("auto", None), ("16", 16)])
def test_env_auto_int(monkeypatch: pytest.MonkeyPatch, raw: str | None, expected: int | None) -> None:
    if raw is None:
        monkeypatch.delenv("BACKSERV_TEST_COUNT", raising=False)
    else:
        monkeypatch.setenv("BACKSERV_TEST_COUNT", raw)
    assert env_auto_int("BACKSERV_TEST_COUNT") == expected


@pytest.mark.parametrize("raw", ["0", "-2", "many", "yes"])
def test_env_auto_int_refuses_what_is_not_auto_or_a_positive_count(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("BACKSERV_TEST_COUNT", raw)
    with pytest.raises(ImproperlyConfigured, match="BACKSERV_TEST_COUNT"):
        env_auto_int("BACKSERV_TEST_COUNT")
