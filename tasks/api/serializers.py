from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request

from backserv_site.media import media_url
from backserv_site.serializers import RefusesUnknownFields, StrictSerializer
from tasks import policy
from tasks.api.dialects import submit_dialects, submit_names_for
from tasks.models import Task, WebhookAttempt, WebhookDelivery, WebhookEvent
from tasks.selectors import (
    eta_seconds,
    queue_lanes,
    task_attempts_history,
    task_queue_position,
    task_queue_positions,
    task_type_run_seconds,
)


class FieldsBuiltOnce:
    """A serializer whose fields are built once per class (for a ModelSerializer, by
    introspecting the model, a tenth of a status read); each instance gets its own
    copies, as DRF binds fields to their serializer."""

    _fields_built: dict[type, dict[str, serializers.Field]] = {}

    def get_fields(self) -> dict[str, serializers.Field]:
        built = FieldsBuiltOnce._fields_built
        if type(self) not in built:
            built[type(self)] = super().get_fields()  # type: ignore[misc]
        return {name: _unbound_copy(field) for name, field in built[type(self)].items()}


def _unbound_copy(field: serializers.Field) -> serializers.Field:
    """The new, unbound field DRF's Field.__deepcopy__ makes from the arguments the
    field was made with, deep-copying only a child field (a field binds its child to
    itself). The copies share the other arguments (defaults, choices, validators),
    which no field changes: keep defaults immutable or callables. The deep copies
    were a tenth of a job's read."""
    kwargs = {
        key: copy.deepcopy(value) if isinstance(value, serializers.Field) else value
        for key, value in field._kwargs.items()
    }
    return type(field)(*field._args, **kwargs)


# Its docstring is the body's description in the schema. The other documents' names are
# their dialects' fields (tasks.api.dialects).
class TaskSubmitSerializer(RefusesUnknownFields, FieldsBuiltOnce, serializers.Serializer):
    """A submit in Back.Serv's own names (task_type, params) or in the names the other
    documents it serves give them."""

    task_type = serializers.CharField(required=False, max_length=50)
    params = serializers.JSONField(required=False)
    priority = serializers.IntegerField(required=False, min_value=0, max_value=10, default=5)
    user_id = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")
    webhook = serializers.URLField(
        required=False, max_length=2000, default="", help_text="POSTed the job, signed, on its events."
    )
    webhook_events = serializers.ListField(
        child=serializers.ChoiceField(choices=WebhookEvent.choices),
        required=False,
        default=list,
        help_text="Events to send besides `completed` (always sent): `start`, `progress`.",
    )
    sync = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Wait for the job to finish (up to the default wait) before answering; see `Prefer: wait=N`.",
    )
    # Only servers of this group may run the job.
    group = serializers.CharField(required=False, allow_blank=True, max_length=100, default="")
    # Seconds the job may wait to start before it becomes TIMEOUT (default per type).
    queue_timeout = serializers.IntegerField(
        required=False, min_value=1, max_value=policy.QUEUE_TIMEOUT_LIMIT_SECONDS, allow_null=True, default=None
    )
    max_attempts = serializers.IntegerField(
        required=False, min_value=1, max_value=policy.MAX_ATTEMPTS_LIMIT, allow_null=True, default=None
    )

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        for dialect in submit_dialects():
            fields.update(dialect.fields())
        return fields

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        type_names = [name for name in submit_names_for("task_type") if name in attrs]
        if not type_names:
            raise serializers.ValidationError({"task_type": ["This field is required."]})
        if len({attrs[name] for name in type_names}) > 1:
            raise serializers.ValidationError({"task_type": [f"{' and '.join(type_names)} disagree; send one."]})
        params_names = [name for name in submit_names_for("params") if name in attrs]
        if len(params_names) > 1:
            message = f"Send the params once; {params_names[0]} is already given."
            raise serializers.ValidationError({params_names[1]: [message]})
        params_name = params_names[0] if params_names else "params"
        task_type, params = attrs[type_names[0]], attrs.get(params_name, {})
        for dialect in submit_dialects():
            task_type, params = dialect.translate(
                body=attrs, task_type=task_type, params=params, params_name=params_name
            )
        return {
            "task_type": task_type,
            "params": params,
            "priority": attrs["priority"],
            "user_label": attrs["user_id"],
            "webhook": attrs["webhook"],
            "webhook_events": attrs["webhook_events"],
            "sync": attrs["sync"],
            "group": attrs["group"],
            "queue_timeout": attrs["queue_timeout"],
            "max_attempts": attrs["max_attempts"],
        }


def with_queue_positions(context: dict[str, Any], tasks: list[Task]) -> dict[str, Any]:
    """A serializer context with the jobs' queue positions counted in one query per
    queue, for serializing many jobs."""
    return {**context, "_queue_positions": task_queue_positions(tasks)}


class TaskSerializer(FieldsBuiltOnce, serializers.ModelSerializer):
    task_id = serializers.UUIDField(source="id", read_only=True)
    user_id = serializers.CharField(source="user_label", read_only=True)
    result = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    queue_position = serializers.SerializerMethodField(
        help_text="While PENDING: how many waiting jobs will be claimed before this one (0: it is next)."
    )
    eta_seconds = serializers.SerializerMethodField(
        help_text="While PENDING: estimated seconds until it finishes, from recent runs of its type."
    )
    server_id = serializers.UUIDField(read_only=True, allow_null=True)
    # Not a URLField: a job without a webhook has "", which is no URI.
    webhook = serializers.CharField(read_only=True, help_text='The URL the job is reported to; "" for none.')
    # The task-manager document's fan-out jobs; a Back.Serv job runs as one unit on one
    # worker, so it never has any.
    subtasks = serializers.SerializerMethodField()
    queue_timeout = serializers.IntegerField(source="queue_timeout_seconds", read_only=True)
    queue_seconds = serializers.FloatField(
        read_only=True, allow_null=True, help_text="Once finished: seconds it waited to start since it was queued."
    )
    gpu_seconds = serializers.FloatField(
        read_only=True,
        allow_null=True,
        help_text="Once finished: its share of the GPU time of the run that ended it (the run's time over the "
        "jobs batched in it); 0 if it never ran.",
    )
    result_expired = serializers.SerializerMethodField(
        help_text="Its output files were deleted (RESULT_RETENTION_DAYS after it finished): `result` has no URLs."
    )

    class Meta:
        model = Task
        fields = [
            "task_id",
            "task_type",
            "state",
            "progress",
            "params",
            "priority",
            "user_id",
            "result",
            "error",
            "attempts",
            "max_attempts",
            "queue_timeout",
            "run_after",
            "cancel_requested",
            "queue_position",
            "eta_seconds",
            "webhook",
            "webhook_events",
            "group",
            "server_id",
            "wait_reason",
            "submitted_at",
            "started_at",
            "completed_at",
            "queue_seconds",
            "gpu_seconds",
            "result_expired",
            "subtasks",
        ]
        read_only_fields = fields

    def to_representation(self, task: Task) -> dict[str, Any]:
        """The job as the fields above give it, built directly: a status poll is the
        API's most frequent call, and binding and running some thirty DRF fields for it
        took most of its serialization. The fields still describe the schema, and
        tests/tasks/test_task_body.py checks the two give the same body."""
        body = {
            "task_id": str(task.pk),
            "task_type": task.task_type,
            "state": str(task.state),
            "progress": float(task.progress),
            "params": task.params,
            "priority": task.priority,
            "user_id": task.user_label,
            "result": self.get_result(task),
            "error": self.get_error(task),
            "attempts": task.attempts,
            "max_attempts": task.max_attempts,
            "queue_timeout": task.queue_timeout_seconds,
            "run_after": _iso(task.run_after),
            "cancel_requested": task.cancel_requested,
            "queue_position": self.get_queue_position(task),
            "eta_seconds": self.get_eta_seconds(task),
            "webhook": task.webhook,
            "webhook_events": task.webhook_events,
            "group": task.group,
            "server_id": str(task.server_id) if task.server_id is not None else None,
            "wait_reason": task.wait_reason,
            "submitted_at": _iso(task.submitted_at),
            "started_at": _iso(task.started_at),
            "completed_at": _iso(task.completed_at),
            "queue_seconds": _float_or_none(task.queue_seconds),
            "gpu_seconds": _float_or_none(task.gpu_seconds),
            "result_expired": self.get_result_expired(task),
            "subtasks": self.get_subtasks(task),
        }
        return body

    def fields_representation(self, task: Task) -> dict[str, Any]:
        """The same through DRF's fields (what to_representation stands in for)."""
        return dict(super().to_representation(task))

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_queue_position(self, task: Task) -> int | None:
        return self._position(task)

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_eta_seconds(self, task: Task) -> float | None:
        position = self._position(task)
        if position is None:
            return None
        # The type's run time is cached per process (see task_type_run_seconds); the
        # queue's lanes per queue, not per job: a listing or a batch shares them.
        run_seconds = task_type_run_seconds(task.task_type)
        if run_seconds is None:
            return None
        lanes = self._cached("_lanes", task.queue_name, lambda: queue_lanes(task))
        return eta_seconds(run_seconds=run_seconds, ahead=position, lanes=lanes)

    def _position(self, task: Task) -> int | None:
        # Both fields need it; count once per job (or for many at once, see
        # with_queue_positions).
        return self._cached("_queue_positions", task.pk, lambda: task_queue_position(task))

    def _cached(self, name: str, key: Any, compute: Callable[[], Any]) -> Any:
        cache = self.context.setdefault(name, {})
        if key not in cache:
            cache[key] = compute()
        return cache[key]

    @extend_schema_field(serializers.JSONField(allow_null=True))
    def get_result(self, task: Task) -> dict[str, Any] | None:
        if task.result is None:
            return None
        request: Request | None = self.context.get("request")
        result = dict(task.result)
        # Download links are made at read time from the storage path: signed and
        # expiring (see backserv_site.media), so the URL stored at finish is not used.
        outputs = []
        for item in result.get("outputs", []):
            output = {key: value for key, value in item.items() if key != "path"}
            outputs.append({**output, "url": output_download_url(item, request)})
        result["outputs"] = outputs
        if "url" in result:
            result["url"] = outputs[0]["url"] if outputs else absolute_url(result["url"], request)
        return result

    @extend_schema_field(serializers.ListField(child=serializers.DictField()))
    def get_subtasks(self, task: Task) -> list[Any]:
        return []

    @extend_schema_field(serializers.BooleanField())
    def get_result_expired(self, task: Task) -> bool:
        return task.result_expired_at is not None

    @extend_schema_field(serializers.DictField(child=serializers.CharField(), allow_null=True))
    def get_error(self, task: Task) -> dict[str, str] | None:
        if not task.error_code:
            return None
        return {"code": task.error_code, "message": task.error_message}


def output_download_url(output: dict[str, Any], request: Request | None) -> str | None:
    """Where a client downloads one stored output: made at read time from its storage
    path (signed and expiring, see backserv_site.media), absolute."""
    path = output.get("path")
    return absolute_url(media_url(path) if path else output.get("url"), request)


class TaskDetailSerializer(TaskSerializer):
    """One job, with every attempt it took (read from its event log)."""

    attempts_history = serializers.SerializerMethodField()

    class Meta(TaskSerializer.Meta):
        fields = [*TaskSerializer.Meta.fields, "attempts_history"]
        read_only_fields = fields

    def to_representation(self, task: Task) -> dict[str, Any]:
        return {**super().to_representation(task), "attempts_history": self.get_attempts_history(task)}

    @extend_schema_field(serializers.ListField(child=serializers.DictField()))
    def get_attempts_history(self, task: Task) -> list[dict[str, Any]]:
        return [
            {**attempt, **{key: _iso(attempt[key]) for key in ("claimed_at", "started_at", "ended_at")}}
            for attempt in task_attempts_history(task=task)
        ]


_DATE_TIME = serializers.DateTimeField()


def _iso(moment: Any) -> str | None:
    """As DRF's DateTimeField writes it (ISO 8601 in the current time zone, UTC as Z)."""
    return _DATE_TIME.to_representation(moment) if moment else None


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def absolute_url(url: str | None, request: Request | None) -> str | None:
    if not url or not url.startswith("/"):
        return url
    if settings.PUBLIC_BASE_URL:
        return settings.PUBLIC_BASE_URL + url
    if request is not None:
        return request.build_absolute_uri(url)
    return url


@extend_schema_field(TaskSubmitSerializer)
class BatchItemField(serializers.JSONField):
    """One job of a batch, documented as the submit body it should be. Read as any JSON,
    null included: the view refuses a bad item in that item's own result, so the batch's
    other jobs are still queued."""

    def validate_empty_values(self, data: Any) -> tuple[bool, Any]:
        # Not allow_null, which would document the items as nullable.
        if data is None:
            return True, None
        return super().validate_empty_values(data)


class BatchSubmitSerializer(StrictSerializer):
    tasks = serializers.ListField(
        child=BatchItemField(),
        allow_empty=False,
        help_text="Up to BATCH_MAX_TASKS submit bodies (as for POST /api/v1/tasks, without `sync`).",
    )

    def validate_tasks(self, items: list[Any]) -> list[Any]:
        limit = settings.BACKSERV["BATCH_MAX_TASKS"]
        if len(items) > limit:
            raise serializers.ValidationError(f"At most {limit} jobs per batch; got {len(items)}.")
        return items


class BatchResultSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    status = serializers.IntegerField(help_text="202 accepted, or the error's status.")
    task = TaskSerializer(required=False, help_text="The queued job, when accepted.")
    error = serializers.JSONField(required=False, help_text="The error body, as for a single submit, when rejected.")


class BatchResponseSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
    rejected = serializers.IntegerField()
    results = BatchResultSerializer(many=True)


class WebhookSecretSerializer(serializers.Serializer):
    secret = serializers.CharField(help_text="`whsec_` + a base64 key (the Standard Webhooks format).")
    rotated_at = serializers.DateTimeField()


class WebhookAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookAttempt
        fields = ["number", "status_code", "duration_ms", "error", "created_at"]
        read_only_fields = fields


class WebhookDeliverySerializer(serializers.ModelSerializer):
    delivery_id = serializers.UUIDField(source="id", read_only=True)
    task_id = serializers.UUIDField(read_only=True)
    attempt_log = WebhookAttemptSerializer(many=True, read_only=True)

    class Meta:
        model = WebhookDelivery
        fields = [
            "delivery_id",
            "task_id",
            "event",
            "url",
            "state",
            "attempts",
            "next_attempt_at",
            "created_at",
            "completed_at",
            "attempt_log",
        ]
        read_only_fields = fields
