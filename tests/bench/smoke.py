"""Running a bench script's smoke mode from a test."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(settings.BASE_DIR)


def run_smoke(script: str, *args: str, env: dict[str, str], timeout: int) -> str:
    """Run `script` (relative to the repository) with `args` and return its output,
    failing the test if it runs past `timeout` seconds or exits non-zero. Past the
    timeout it is sent SIGTERM: each bench stops the servers and processes it started
    before it exits."""
    command = [sys.executable, script, *args]
    started = time.monotonic()
    bench = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = bench.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        bench.terminate()
        output, _ = bench.communicate(timeout=90)
        pytest.fail(f"{script} {' '.join(args)} took over {timeout}s:\n{output[-4000:]}")
    print(f"{script} {' '.join(args)}: {time.monotonic() - started:.0f}s\n{output[-4000:]}")
    assert bench.returncode == 0, output[-6000:]
    return output
