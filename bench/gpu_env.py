"""The environment of each process the bench starts: the real settings (not the tests'),
no shared services, a throwaway var dir, and the one model measured."""

from __future__ import annotations

from pathlib import Path

SECRET_KEY = "bench-gpu-only-secret-key-0123456789-abcdefghijklmnop"
EAGER_ENV = {"GENERATION_CUDA_GRAPHS": "0", "GENERATION_CHANNELS_LAST": "0", "GENERATION_TORCH_COMPILE": "0"}
# Services the embedded runs must not see: they would turn it into a fleet member.
SERVICE_VARS = ("DATABASE_URL", "BROKER_URL", "CACHE_URL", "REDIS_URL")


class Environments:
    """Builds the environments from the one the bench was started in; `model_path` is
    set once the model folder is there."""

    def __init__(
        self, base: dict[str, str], *, work: Path, model_env: list[str], smoke: bool, worker_process: str
    ) -> None:
        self.base = base
        self.work = work
        self.model_env = model_env
        self.smoke = smoke
        self.worker_process = worker_process
        self.model_path: Path | None = None

    def child(self, name: str, **overrides: str) -> dict[str, str]:
        """A subprocess's environment: the real settings (not the tests'), no shared
        services, a throwaway var dir, and no demo model beside the one measured."""
        env = {key: value for key, value in self.base.items() if key not in SERVICE_VARS}
        for key in (*EAGER_ENV, "GENERATION_WORKER_PROCESS", "MODELS_DIR", "DJANGO_SETTINGS_MODULE"):
            env.pop(key, None)
        var_dir = self.work / name
        (self.work / "no-models").mkdir(exist_ok=True)
        env.update(
            DJANGO_SETTINGS_MODULE="backserv_site.settings",
            BACKSERV_VAR_DIR=str(var_dir),
            MEDIA_ROOT=str(var_dir / "media"),
            MODELS_DIR=str(self.work / "no-models"),
            PIPELINE_CACHE_SIZE="1",
            SECRET_KEY=SECRET_KEY,
            PYTHONUNBUFFERED="1",
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_VERBOSITY="error",
            LOG_FORMAT="json",
            LOG_LEVEL="INFO",
        )
        if self.model_path is not None:
            env.update({key: str(self.model_path) for key in self.model_env})
        if self.smoke:
            env["GENERATION_DEVICE"] = "cpu"
        env.update(overrides)
        return env

    def server(self, name: str, batch: int) -> dict[str, str]:
        """A server's: batching at `batch`, and no rate or queue limit a bench would hit."""
        env = self.child(
            name,
            DYNAMIC_BATCH_SIZE=str(batch),
            RATE_LIMIT_DEFAULT="10000000/min",
            RATE_LIMIT_TASK_CREATE="10000000/min",
            BACKSERV_MAX_UNFINISHED_TASKS="100000",
        )
        if self.worker_process != "auto":
            env["GENERATION_WORKER_PROCESS"] = "1" if self.worker_process == "on" else "0"
        return env

    def fleet_worker(self, name: str, batch: int) -> dict[str, str]:
        """What bench/fleet.py's worker is given of a server's environment: the model, the
        batching and the generation settings; the rest is the fleet's own."""
        env = self.server(name, batch)
        worker_env = {
            key: env[key]
            for key in (*self.model_env, "MODELS_DIR", "PIPELINE_CACHE_SIZE", "DYNAMIC_BATCH_SIZE", "LOG_FORMAT")
        }
        worker_env.update({key: value for key, value in env.items() if key.startswith("GENERATION_")})
        worker_env["LOG_LEVEL"] = "INFO"
        return worker_env
