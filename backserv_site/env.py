"""Typed readers for settings that come from the environment.

Each helper raises ImproperlyConfigured on a value it cannot read, so a typo in a
deployment fails at start instead of silently falling back to a default.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None


def env_auto_bool(name: str) -> bool | None:
    """A switch that may be left to the code: unset, empty or "auto" is None."""
    raw = os.environ.get(name)
    if raw is None or raw.strip().lower() in ("", "auto"):
        return None
    return env_bool(name)


def env_auto_int(name: str) -> int | None:
    """A positive count that may be left to the code: unset, empty or "auto" is None."""
    raw = os.environ.get(name)
    if raw is None or raw.strip().lower() in ("", "auto"):
        return None
    value = env_int(name, 0)
    if value < 1:
        raise ImproperlyConfigured(f"{name} must be auto or an integer of at least 1, got {raw!r}")
    return value


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_json_object(name: str) -> dict:
    """A JSON object (e.g. a storage backend's options); unset or empty: {}."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as error:
        raise ImproperlyConfigured(f"{name} must be a JSON object: {error}") from None
    if not isinstance(value, dict):
        raise ImproperlyConfigured(f"{name} must be a JSON object, got {type(value).__name__}")
    return value


_RATE = re.compile(r"^\d+/(s|sec|second|m|min|minute|h|hour|d|day)$")


def env_rate(name: str, default: str) -> str | None:
    """A DRF throttle rate such as "100/min"; an empty value turns the limit off."""
    raw = os.environ.get(name, default).strip()
    if raw == "":
        return None
    if not _RATE.match(raw):
        raise ImproperlyConfigured(f"{name} must be a rate such as 100/min (or empty for no limit), got {raw!r}")
    return raw


def env_seconds_by_type(name: str, defaults: dict[str, float]) -> dict[str, float]:
    """Seconds per task type, e.g. "default=600,image_creation=300": the given types
    override `defaults`; "default" applies to types named nowhere."""
    values = dict(defaults)
    for item in env_list(name, []):
        key, separator, raw = item.partition("=")
        try:
            seconds = float(raw)
        except ValueError:
            seconds = -1.0
        if not separator or not key.strip() or seconds <= 0:
            raise ImproperlyConfigured(f"{name} must look like 'default=600,image_creation=300', got {item!r}")
        values[key.strip()] = seconds
    return values


def env_secret(name: str) -> str:
    """A secret from NAME, or from the file named by NAME_FILE (Docker/K8s secrets)."""
    value = os.environ.get(name)
    if value:
        return value
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as error:
            raise ImproperlyConfigured(f"{name}_FILE names {path!r}, which cannot be read: {error}") from None
    return ""


def local_secret_key(path: Path) -> str:
    """A secret key generated once and kept in a local file (embedded mode only)."""
    if path.exists():
        return path.read_text().strip()
    from django.core.management.utils import get_random_secret_key

    path.parent.mkdir(parents=True, exist_ok=True)
    key = get_random_secret_key()
    # O_EXCL: two processes starting at once must not write two different keys.
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key)
    return key
