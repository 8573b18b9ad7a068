"""Back.Serv's Python client and the `backserv` command line.

    from backserv_client import Client

    with Client() as client:  # BACKSERV_URL, BACKSERV_TOKEN
        job = client.run("image_creation", prompt="a lighthouse at dusk")
        if job.succeeded:
            job.download("lighthouse.png")

See clients/python/README.md for every method and command.
"""

from __future__ import annotations

from backserv_client._version import __version__
from backserv_client.client import Client
from backserv_client.errors import ApiError, BackservError, ConnectionFailed, WebhookVerificationError
from backserv_client.models import Event, Job, JobError, Output, TaskType, Upload, Usage
from backserv_client.webhooks import verify_webhook

__all__ = [
    "ApiError",
    "BackservError",
    "Client",
    "ConnectionFailed",
    "Event",
    "Job",
    "JobError",
    "Output",
    "TaskType",
    "Upload",
    "Usage",
    "WebhookVerificationError",
    "__version__",
    "verify_webhook",
]
