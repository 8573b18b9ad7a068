"""The studio's names for our params and states."""

from __future__ import annotations

from tasks.models import TaskState

# Our params -> the studio's names, for errors and for "parameters".
STUDIO_NAMES = {
    "negative_prompt": "negativePrompt",
    "guidance_scale": "cfgScale",
    "scale_factor": "scale",
}
# One way only: each of our states shows as one of the document's.
STATUS_NAMES = {
    TaskState.PENDING: "queued",
    TaskState.RECEIVED: "generating",
    TaskState.STARTED: "generating",
    TaskState.SUCCESS: "completed",
    TaskState.FAILURE: "failed",
    TaskState.TIMEOUT: "failed",
    TaskState.REVOKED: "failed",
}
