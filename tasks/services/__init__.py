"""Every write to a job and every state change.

Every change of a job, of one or many at once, is a tasks.services.core.Change: one
conditional UPDATE (`WHERE state IN (...)`, plus the claim's worker and attempt for
changes only the running worker may make) and one INSERT of its events, in one
transaction. Whoever commits second among racing writers (two workers, a cancel, a
sweep) updates no row and gets False (or no jobs) back: exactly one wins.
"""

from __future__ import annotations

from tasks.services.core import task_redispatch
from tasks.services.running import (
    task_claim,
    task_fail,
    task_hand_back,
    task_lease_renew,
    task_progress_report,
    task_revoke_running,
    task_start,
    task_succeed,
    task_time_out_running,
    tasks_claim_and_start,
    tasks_succeed,
)
from tasks.services.submitting import (
    task_cancel,
    task_delete,
    task_requeue,
    task_retry,
    task_submit,
    tasks_submitted_together,
)
from tasks.services.sweeps import (
    task_release,
    tasks_recover_after_restart,
    tasks_redispatch_stale,
    tasks_requeue_expired,
    tasks_time_out_queued,
)

__all__ = [
    "task_cancel",
    "task_claim",
    "task_delete",
    "task_fail",
    "task_hand_back",
    "task_lease_renew",
    "task_progress_report",
    "task_redispatch",
    "task_release",
    "task_requeue",
    "task_retry",
    "task_revoke_running",
    "task_start",
    "task_submit",
    "task_succeed",
    "task_time_out_running",
    "tasks_claim_and_start",
    "tasks_recover_after_restart",
    "tasks_redispatch_stale",
    "tasks_requeue_expired",
    "tasks_submitted_together",
    "tasks_succeed",
    "tasks_time_out_queued",
]
