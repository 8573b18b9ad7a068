"""The `backserv` command against a live server: run with its progress and downloads,
the exit statuses, the job commands, params on the wire, uploads and Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest
import requests
from PIL import Image

from tests.clients.conftest import BACKSERV, SLOW_PARAMS, Cli, LiveServer, Proxy, cli_env, make_png
from tests.e2e.processes import free_port, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SMALL = ("-p", "width=64", "-p", "height=64", "-p", "steps=4", "-p", "seed=7")


def test_run_shows_the_progress_and_saves_the_image(cli: Cli, tmp_path: Path) -> None:
    result = cli("run", "image_creation", "-p", "prompt=a lighthouse", *SMALL, "-o", "out.png")

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["out.png"]
    with Image.open(tmp_path / "out.png") as image:
        assert (image.format, image.size) == ("PNG", (64, 64))
    lines = result.stderr.splitlines()
    assert lines[0].startswith("submitted ")
    # Outside a terminal: a line per state, then the bar as it ended.
    assert lines[1].startswith("PENDING queue position ")
    assert [line for line in lines[2:] if line in {"RECEIVED", "STARTED", "SUCCESS"}] == [
        "RECEIVED",
        "STARTED",
        "SUCCESS",
    ]
    assert "image_creation SUCCESS" in lines[-1] and "4/4 steps" in lines[-1]


def test_run_saves_several_outputs_into_a_folder(cli: Cli, tmp_path: Path) -> None:
    result = cli("run", "image_creation", "-p", "prompt=two foxes", "-p", "num_images=2", *SMALL, "-o", "foxes")

    assert result.returncode == 0, result.stderr
    job_id = result.stderr.splitlines()[0].split()[1]
    assert result.stdout.splitlines() == [f"foxes/{job_id}-0.png", f"foxes/{job_id}-1.png"]
    first, second = ((tmp_path / line).read_bytes() for line in result.stdout.splitlines())
    assert first != second


def test_a_failed_job_exits_1_with_its_error_code_and_message(cli: Cli, tmp_path: Path) -> None:
    blank = make_png(tmp_path / "blank.png")

    result = cli("run", "face_swap", "-p", f"source_image={blank}", "-p", "target_image=blank.png")

    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1] == "FAILURE NO_FACE_FOUND: source_image: no face was found."


def test_a_refused_submit_exits_3_naming_the_field(cli: Cli) -> None:
    result = cli("run", "image_creation", "-p", "prompt=x", "-p", "steps=100000")

    assert result.returncode == 3
    assert "400 invalid_params: params.steps: Must be at most 1000, got 100000." in result.stderr
    assert "submitted" not in result.stderr


def test_a_local_image_path_is_uploaded_for_an_image_param(
    cli: Cli, backserv_server: LiveServer, tmp_path: Path
) -> None:
    make_png(tmp_path / "in.png", size=(72, 64))

    result = cli("run", "image_to_image", "-p", "image=in.png", "-p", "prompt=hello", "-p", "steps=2", "-o", "out.png")

    assert result.returncode == 0, result.stderr
    job = backserv_server.job(result.stderr.splitlines()[0].split()[1])
    assert job["params"]["image"].startswith("upload:")
    upload_id = job["params"]["image"].removeprefix("upload:")
    upload = backserv_server.api("GET", f"/api/v1/uploads/{upload_id}").json()
    assert (upload["width"], upload["height"]) == (72, 64)
    with Image.open(tmp_path / "out.png") as image:
        assert image.size == (72, 64)


def test_params_reach_the_api_as_json_values(backserv_server: LiveServer, proxy: Proxy, tmp_path: Path) -> None:
    args = [
        "submit",
        "image_creation",
        "--json-params",
        '{"prompt": "overridden", "width": 64, "height": 64}',
        "-p",
        "steps=4",
        "-p",
        "prompt=hello",
        "-p",
        "seed=null",
        "-p",
        "negative_prompt=[1, 2",
        "--url",
        proxy.url,
    ]
    result = subprocess.run(
        [str(BACKSERV), *args], env=cli_env(backserv_server), capture_output=True, text=True, timeout=60, cwd=tmp_path
    )

    assert result.returncode == 3, result.stderr  # the server refuses the null seed
    (sent,) = proxy.sent("POST", "/api/v1/tasks")
    assert json.loads(sent.body)["params"] == {
        "prompt": "hello",
        "width": 64,
        "height": 64,
        "steps": 4,
        "seed": None,
        "negative_prompt": "[1, 2",
    }
    assert "params.seed" in result.stderr
    assert len(sent.headers["idempotency-key"]) >= 32


def test_submit_status_wait_and_download(cli: Cli, backserv_server: LiveServer, tmp_path: Path) -> None:
    submitted = cli("submit", "image_creation", "-p", "prompt=a boat", *SMALL)
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()

    waited = cli("wait", job_id)
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout == f"{job_id} SUCCESS\n"

    status = cli("status", job_id)
    assert status.returncode == 0
    assert job_id in status.stdout and "SUCCESS" in status.stdout and "output 0" in status.stdout
    as_json = cli("status", job_id, "--json")
    assert json.loads(as_json.stdout)["task_id"] == job_id
    assert json.loads(as_json.stdout)["params"]["prompt"] == "a boat"

    downloaded = cli("download", job_id, "-o", "saved")
    assert downloaded.returncode == 0, downloaded.stderr
    assert downloaded.stdout.splitlines() == [f"saved/{job_id}-0.png"]
    signed_url = backserv_server.job(job_id)["result"]["url"]
    assert (tmp_path / "saved" / f"{job_id}-0.png").read_bytes() == requests.get(signed_url, timeout=30).content


def test_cancel_retry_and_list_by_state(cli: Cli, backserv_server: LiveServer) -> None:
    submitted = cli("submit", "image_creation", *SLOW_PARAMS, "--priority", "0")
    job_id = submitted.stdout.strip()

    cancelled = cli("cancel", job_id)
    assert cancelled.returncode == 0, cancelled.stderr
    backserv_server.wait_state(job_id, {"REVOKED"})
    again = cli("cancel", job_id)
    assert again.returncode == 3 and "409" in again.stderr

    revoked = json.loads(cli("list", "--state", "REVOKED", "--json", "--limit", "100").stdout)
    assert job_id in [job["task_id"] for job in revoked]
    assert {job["state"] for job in revoked} == {"REVOKED"}
    succeeded = json.loads(cli("list", "--state", "SUCCESS", "--json", "--limit", "100").stdout)
    assert job_id not in [job["task_id"] for job in succeeded]
    table = cli("list", "--limit", "100")
    assert any(line.startswith(job_id) and "REVOKED" in line for line in table.stdout.splitlines())

    retried = cli("retry", job_id)
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.split()[0] == job_id
    assert backserv_server.job(job_id)["state"] != "REVOKED"
    assert cli("cancel", job_id).returncode == 0
    backserv_server.wait_state(job_id, {"REVOKED"})

    waited = cli("wait", job_id)
    assert waited.returncode == 1 and waited.stdout == f"{job_id} REVOKED\n"
    no_outputs = cli("download", job_id)
    assert no_outputs.returncode == 1 and "REVOKED" in no_outputs.stderr


def test_upload_prints_a_reference_a_job_can_use(cli: Cli, backserv_server: LiveServer, tmp_path: Path) -> None:
    make_png(tmp_path / "photo.png", size=(64, 64))

    uploaded = cli("upload", "photo.png")

    assert uploaded.returncode == 0, uploaded.stderr
    reference = uploaded.stdout.strip()
    assert reference.startswith("upload:")
    params = ("-p", f"image={reference}", "-p", "method=lanczos", "-p", "scale_factor=2")
    upscaled = cli("run", "image_upscale", *params, "-o", "big.png")
    assert upscaled.returncode == 0, upscaled.stderr
    with Image.open(tmp_path / "big.png") as image:
        assert image.size == (128, 128)
    assert cli("upload", "missing.png").returncode == 2


def test_ctrl_c_cancels_the_running_job(backserv_server: LiveServer, tmp_path: Path) -> None:
    process = subprocess.Popen(
        [str(BACKSERV), "run", "image_creation", *SLOW_PARAMS],
        env=cli_env(backserv_server),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        first_line = process.stderr.readline()
        assert first_line.startswith("submitted "), first_line
        job_id = first_line.split()[1]
        wait_until(lambda: backserv_server.job(job_id)["progress"] > 0, timeout=120, what="the job to be mid-run")

        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()

    assert process.returncode == 130, stderr
    assert f"interrupted: cancelling {job_id}" in stderr
    assert stdout == ""
    job = backserv_server.wait_state(job_id, {"REVOKED", "SUCCESS", "FAILURE"})
    assert job["state"] == "REVOKED"
    assert job["progress"] < 1


def test_flags_override_the_environment(cli: Cli, backserv_server: LiveServer) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"

    unreachable = cli("list", BACKSERV_URL=nowhere)
    assert unreachable.returncode == 3 and "ConnectError" in unreachable.stderr
    refused = cli("list", BACKSERV_TOKEN="bs_00000000_not-a-token")
    assert refused.returncode == 3
    assert "401 authentication_failed" in refused.stderr and "BACKSERV_TOKEN" in refused.stderr

    flags = ("--url", backserv_server.url, "list", "--token", backserv_server.token)
    both = cli(*flags, BACKSERV_URL=nowhere, BACKSERV_TOKEN="bs_x")
    assert both.returncode == 0, both.stderr


def test_another_users_job_and_an_unknown_one_are_not_found(cli: Cli, backserv_server: LiveServer) -> None:
    job_id = cli("submit", "image_creation", "-p", "prompt=mine", *SMALL).stdout.strip()

    theirs = cli("status", job_id, BACKSERV_TOKEN=backserv_server.other_token)
    unknown = cli("status", "00000000-0000-0000-0000-000000000000")

    assert theirs.returncode == 3 and f"404 not_found: Task {job_id} not found." in theirs.stderr
    assert unknown.returncode == 3 and "404 not_found" in unknown.stderr
    assert cli("wait", job_id).returncode == 0


def test_messages_are_shown_as_sent_never_read_as_markup(cli: Cli) -> None:
    result = cli("submit", "image_creation", "-p", "prompt=x", "-p", "[red]colour[/]=1")

    assert result.returncode == 3
    assert "params.[red]colour[/]: Unknown parameter." in result.stderr


def test_a_bad_param_pair_is_a_usage_error(cli: Cli) -> None:
    result = cli("submit", "image_creation", "-p", "no-equals-sign")

    assert result.returncode == 2
    assert "-p takes KEY=VALUE, got 'no-equals-sign'." in result.stderr
