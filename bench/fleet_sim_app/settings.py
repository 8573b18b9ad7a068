"""The settings of bench/fleet_sim.py's worker processes: the real ones, plus the app
that gives text-to-image simulated GPUs (fleet_sim_app.apps). The API keeps the real
settings: it never imports a pipeline."""

from __future__ import annotations

import os
from pathlib import Path

from backserv_site.settings import *  # noqa: F403
from backserv_site.settings import GENERATION, INSTALLED_APPS

# After "generation": its ready() installs the specs this app's ready() then changes.
INSTALLED_APPS = [*INSTALLED_APPS, "fleet_sim_app"]

# One model folder per worker thread, each thread's simulated GPU (see apps.py). Never
# read: the simulated pipeline loads nothing.
SIMULATED_GPUS = int(os.environ.get("FLEET_SIM_GPUS", "1"))
GENERATION = {
    **GENERATION,
    "MODELS": {
        **GENERATION["MODELS"],
        **{f"simulated_gpu_{index}": str(Path(__file__).parent / f"gpu-{index}") for index in range(SIMULATED_GPUS)},
    },
    # Every thread's GPU stays loaded.
    "PIPELINE_CACHE_SIZE": SIMULATED_GPUS,
}
