"""The API process stays light and the apps stay apart: loading the URLconf and the ASGI
application imports no GPU library, and the import contracts in pyproject.toml hold."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# What a GPU worker imports and the API process must not: seconds of import time and
# gigabytes of memory per API worker, for nothing it uses.
HEAVY = ("torch", "diffusers", "transformers", "cv2", "numpy")

_LOAD = """
import json, sys
import django
django.setup()
from django.urls import get_resolver
get_resolver().url_patterns  # the whole URLconf, every app's views and the documents'
import backserv_site.asgi
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in {heavy})))
"""


def test_the_urlconf_and_the_asgi_app_load_no_gpu_library() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "backserv_site.settings"}
    script = _LOAD.format(heavy=set(HEAVY))
    loaded = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(loaded.stdout.strip().splitlines()[-1]) == []


def test_a_gpu_library_imported_by_the_api_would_be_caught(tmp_path: Path) -> None:
    """The check above sees what it looks for: the same load with numpy pulled in first."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "backserv_site.settings"}
    script = "import numpy\n" + _LOAD.format(heavy=set(HEAVY))
    loaded = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True
    )
    assert "numpy" in json.loads(loaded.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not (Path(sys.executable).parent / "lint-imports").exists(), reason="import-linter not installed")
def test_the_import_contracts_hold() -> None:
    checked = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports")], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert checked.returncode == 0, checked.stdout[-4000:]
