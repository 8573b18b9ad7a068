"""Back.Serv's own settings, plus the bare DRF views bench/api.py compares against."""

from backserv_site.settings import *  # noqa: F403

ROOT_URLCONF = "baseline.urls"
