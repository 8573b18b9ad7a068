"""`-p KEY=VALUE`: JSON where it parses, a string otherwise; local files for image params."""

from __future__ import annotations

from pathlib import Path

import pytest
from backserv_client.params import ParamError, build_params, parse_param, with_local_images


@pytest.mark.parametrize(
    ("pair", "expected"),
    [
        ("steps=4", ("steps", 4)),
        ("guidance_scale=7.5", ("guidance_scale", 7.5)),
        ("prompt=hello", ("prompt", "hello")),
        ("prompt=a red fox", ("prompt", "a red fox")),
        ('prompt="42"', ("prompt", "42")),
        ("seed=null", ("seed", None)),
        ('webhook_events=["start"]', ("webhook_events", ["start"])),
        ("prompt=x=y", ("prompt", "x=y")),
        ("prompt=", ("prompt", "")),
        (" steps =4", ("steps", 4)),
    ],
)
def test_a_value_is_json_where_it_parses_and_a_string_otherwise(pair: str, expected: tuple[str, object]) -> None:
    assert parse_param(pair) == expected


@pytest.mark.parametrize("pair", ["steps", "=4", ""])
def test_a_pair_without_a_key_is_refused(pair: str) -> None:
    with pytest.raises(ParamError, match="KEY=VALUE"):
        parse_param(pair)


def test_pairs_override_the_json_params() -> None:
    params = build_params(["steps=4", "prompt=hello"], '{"prompt": "base", "width": 64}')

    assert params == {"prompt": "hello", "width": 64, "steps": 4}


@pytest.mark.parametrize("json_params", ["[1, 2]", "{not json"])
def test_json_params_must_be_an_object(json_params: str) -> None:
    with pytest.raises(ParamError, match="--json-params"):
        build_params([], json_params)


def test_only_image_params_naming_an_existing_file_become_uploads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cat.png").write_bytes(b"png")
    (tmp_path / "cat").write_bytes(b"a file named like a prompt")

    params = with_local_images(
        {
            "image": "cat.png",
            "source_image": "missing.png",
            "target_image": "upload:cat.png",
            "prompt": "cat",
            "steps": 4,
        }
    )

    assert params == {
        "image": Path("cat.png"),
        "source_image": "missing.png",
        "target_image": "upload:cat.png",
        "prompt": "cat",
        "steps": 4,
    }
