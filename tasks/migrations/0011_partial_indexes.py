"""Fewer and smaller indexes on tasks_task: 12 where there were 15 (the primary key,
the owner's and the server's foreign-key indexes, 11 more, the idempotency key's).

Most rows are finished jobs, yet the hot paths read only unfinished ones; and every
state change of a job (not a HOT update: `state` is indexed) writes an entry into every
index whose condition the new row matches. So the indexes over unfinished jobs are
partial: a finished job is neither in them nor written into them. Over 300,000 jobs,
97% finished, the table's indexes take 69 MiB instead of 153 (bench/indexes.py, which
also EXPLAINs each query below). Each index that stays, and the query it serves:

- primary key: every read and write of one job.
- task_owner_recent (owner, -submitted_at): GET /api/v1/tasks, an owner's jobs newest
  first; also the owner foreign key's lookups (a user's deletion), so that key has no
  index of its own any more.
- task_owner_unfinished (owner) WHERE unfinished: a submit's quota
  (tasks.selectors.submit_figures).
- task_pending_claim_order (queue_name, -priority, submitted_at) WHERE PENDING: the
  claim's read of a queue's best waiting jobs (tasks.services.running._claimable) and a
  job's queue position (tasks.selectors._queue_ahead, task_queue_positions).
- task_active_lease (lease_expires_at) WHERE claimed or running: the sweep of expired
  leases (tasks.services.sweeps.tasks_requeue_expired), and a queue's lanes (its
  running jobs, tasks.selectors._queue_lanes), a set no larger than the fleet's slots.
- task_pending_deadline (queue_deadline) WHERE PENDING: the sweep of queue deadlines
  (tasks_time_out_queued).
- task_pending_queued (queued_at) WHERE PENDING: the dashboard's oldest waiting job
  and queue depth (tasks.stats.queue_summary).
- task_submitted (submitted_at), task_completed (completed_at): the stats' day of jobs
  (tasks.stats); task_completed also serves a type's recent runs for the ETA
  (tasks.selectors._task_type_run_seconds, read at most every 10 s per process), which
  had an index of its own (task_type_recent_runs, 20 MiB of the 153).
- task_server_completed (server, completed_at): a server's day of stats
  (servers.stats.stats_server); also the server foreign key's lookups (SET NULL when a
  server is deleted), so that key has no index of its own any more.
- task_server_unfinished (server) WHERE unfinished: routing's load per server
  (servers.routing._servers_with_load).
- task_owner_idempotency_key (unique, where a key is given): a submit's idempotency.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

UNFINISHED = models.Q(("state__in", ["PENDING", "RECEIVED", "STARTED"]))
ACTIVE = models.Q(("state__in", ["RECEIVED", "STARTED"]))


class Migration(migrations.Migration):
    dependencies = [
        ("servers", "0003_server_api_key"),
        ("tasks", "0010_taskevent_handed_back"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # The new indexes first: the queries have one at every step.
        migrations.AddIndex(
            model_name="task",
            index=models.Index(condition=UNFINISHED, fields=["owner"], name="task_owner_unfinished"),
        ),
        migrations.AddIndex(
            model_name="task",
            index=models.Index(
                condition=models.Q(("state", "PENDING")),
                fields=["queue_name", "-priority", "submitted_at"],
                name="task_pending_claim_order",
            ),
        ),
        migrations.AddIndex(
            model_name="task",
            index=models.Index(condition=ACTIVE, fields=["lease_expires_at"], name="task_active_lease"),
        ),
        migrations.AddIndex(
            model_name="task",
            index=models.Index(
                condition=models.Q(("state", "PENDING")), fields=["queue_deadline"], name="task_pending_deadline"
            ),
        ),
        migrations.AddIndex(
            model_name="task",
            index=models.Index(
                condition=models.Q(("state", "PENDING")), fields=["queued_at"], name="task_pending_queued"
            ),
        ),
        migrations.AddIndex(
            model_name="task",
            index=models.Index(condition=UNFINISHED, fields=["server"], name="task_server_unfinished"),
        ),
        migrations.RemoveIndex(model_name="task", name="task_claim_order"),
        migrations.RemoveIndex(model_name="task", name="task_state_lease"),
        migrations.RemoveIndex(model_name="task", name="task_state_queue_deadline"),
        migrations.RemoveIndex(model_name="task", name="task_state_queued"),
        migrations.RemoveIndex(model_name="task", name="task_server_state"),
        migrations.RemoveIndex(model_name="task", name="task_type_recent_runs"),
        migrations.RemoveIndex(model_name="task", name="task_owner_state"),
        migrations.AlterField(
            model_name="task",
            name="owner",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="tasks",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AlterField(
            model_name="task",
            name="server",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="tasks",
                to="servers.server",
            ),
        ),
    ]
