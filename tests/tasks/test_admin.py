"""The admin console: list, filters, search, detail, and actions that go through the
same services as the API. Staff only; the dashboard renders with data."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client

from accounts.models import User
from tasks import services
from tasks.models import Task, TaskState

CHANGELIST = "/admin/tasks/task/"


@pytest.fixture
def console(staff: User) -> Client:
    client = Client()
    client.force_login(staff)
    return client


def _task(owner: User, prompt: str = "a red fox", **fields: Any) -> Task:
    return services.task_submit(owner=owner, task_type="image_creation", params={"prompt": prompt}, **fields)


def _running(task: Task, worker: str = "gpu-1:7") -> Task:
    services.task_claim(task_id=task.pk, worker=worker)
    task = Task.objects.get(pk=task.pk)
    services.task_start(task=task)
    return Task.objects.get(pk=task.pk)


def _act(console: Client, action: str, *tasks: Task) -> Any:
    body = {"action": action, "_selected_action": [str(task.pk) for task in tasks]}
    return console.post(CHANGELIST, body, follow=True)


def test_the_list_shows_badges_progress_attempts_and_duration(console: Client, owner: User) -> None:
    task = _running(_task(owner))
    services.task_succeed(task=task, result={})
    html = console.get(CHANGELIST).content.decode()
    assert 'class="state-badge"' in html and "SUCCESS" in html
    assert "<progress" in html and "1/3" in html and " s</td>" in html


def test_the_list_filters_by_state_type_and_user(console: Client, owner: User, other_user: User) -> None:
    mine = _task(owner)
    theirs = _running(_task(other_user))
    by_state = console.get(CHANGELIST, {"state__exact": "STARTED"})
    assert list(by_state.context["cl"].queryset) == [theirs]
    by_owner = console.get(CHANGELIST, {"owner__id__exact": owner.pk, "task_type": "image_creation"})
    assert list(by_owner.context["cl"].queryset) == [mine]


@pytest.mark.parametrize("query", ["id", "prompt", "label"])
def test_the_list_searches_id_prompt_and_user_label(console: Client, owner: User, query: str) -> None:
    wanted = _task(owner, prompt="a lighthouse at dusk", user_label="customer-77")
    _task(owner, prompt="a red fox", user_label="customer-12")
    term = {"id": str(wanted.pk), "prompt": "lighthouse", "label": "customer-77"}[query]
    assert list(console.get(CHANGELIST, {"q": term}).context["cl"].queryset) == [wanted]


def test_the_detail_shows_params_preview_error_attempts_and_timeline(console: Client, owner: User) -> None:
    task = _task(owner)
    first = _running(task)
    services.task_fail(task=first, code="OUT_OF_MEMORY", message="CUDA out of memory")
    Task.objects.filter(pk=task.pk).update(run_after=None)
    second = _running(Task.objects.get(pk=task.pk), worker="gpu-2:9")
    image_path = default_storage.save(f"outputs/{task.pk}/2-0.png", ContentFile(b"\x89PNG preview bytes"))
    outputs = [
        {"path": image_path, "url": f"/media/{image_path}", "content_type": "image/png"},
        {"path": f"outputs/{task.pk}/2-1.mp4", "url": f"/media/outputs/{task.pk}/2-1.mp4", "content_type": "video/mp4"},
    ]
    services.task_succeed(task=second, result={"outputs": outputs})
    html = console.get(f"{CHANGELIST}{task.pk}/change/").content.decode()
    assert "a red fox" in html
    image_src = re.search(r'<img src="([^"]+)"', html)[1].replace("&amp;", "&")
    assert image_src.startswith(f"/media/{image_path}?") and "signature=" in image_src
    # The thumbnail loads: its link is signed, as the API's are.
    preview = console.get(image_src)
    assert preview.status_code == 200 and b"".join(preview.streaming_content) == b"\x89PNG preview bytes"
    assert re.search(rf'<video src="/media/outputs/{task.pk}/2-1.mp4\?[^"]*signature=[^"]*" controls', html)
    assert "OUT_OF_MEMORY: CUDA out of memory" in html and "gpu-2:9" in html
    assert "retry_scheduled" in html and "Event timeline" in html


def test_the_cancel_action_uses_the_cancel_service(console: Client, owner: User) -> None:
    waiting, running = _task(owner), _running(_task(owner))
    finished = _running(_task(owner))
    services.task_succeed(task=finished, result={})
    response = _act(console, "cancel_tasks", waiting, running, finished)
    assert Task.objects.get(pk=waiting.pk).state == TaskState.REVOKED
    assert Task.objects.get(pk=running.pk).cancel_requested
    assert "Cancelled 2 task(s)." in response.content.decode()
    assert "already SUCCESS" in response.content.decode()


def test_the_retry_action_uses_the_retry_service(console: Client, owner: User) -> None:
    failed = _running(_task(owner))
    services.task_fail(task=failed, code="PIPELINE_ERROR", message="boom")
    _act(console, "retry_tasks", failed)
    retried = Task.objects.get(pk=failed.pk)
    assert (retried.state, retried.attempts, retried.error_code) == (TaskState.PENDING, 0, "")


def test_the_requeue_action_forces_a_stuck_job_back_to_pending(console: Client, owner: User) -> None:
    stuck = _running(_task(owner))
    _act(console, "requeue_tasks", stuck)
    requeued = Task.objects.get(pk=stuck.pk)
    assert (requeued.state, requeued.worker) == (TaskState.PENDING, "")


def test_the_delete_action_deletes_finished_jobs_and_refuses_running_ones(console: Client, owner: User) -> None:
    finished = _task(owner)
    services.task_cancel(task=finished)
    running = _running(_task(owner))
    response = _act(console, "delete_tasks_with_files", finished, running)
    assert not Task.objects.filter(pk=finished.pk).exists()
    assert Task.objects.filter(pk=running.pk).exists()
    assert "Task is running" in response.content.decode()


def test_the_stock_bulk_delete_is_not_offered(console: Client, owner: User) -> None:
    _task(owner)
    assert "delete_selected" not in console.get(CHANGELIST).content.decode()


def test_the_dashboard_shows_states_hours_rates_percentiles_and_queue(console: Client, owner: User) -> None:
    done = _running(_task(owner))
    services.task_succeed(task=done, result={})
    failed = _running(_task(owner))
    services.task_fail(task=failed, code="PIPELINE_ERROR", message="boom")
    _task(owner)
    response = console.get(f"{CHANGELIST}dashboard/")
    assert response.status_code == 200
    html = response.content.decode()
    assert '<svg id="chart-states"' in html and '<svg id="chart-hourly"' in html
    assert 'data-label="SUCCESS" data-value="1"' in html
    assert 'data-series="created" data-total="3"' in html
    assert response.context["success_rate"] == 50.0
    assert response.context["queue"]["depth"] == 1
    assert [task_type for task_type, _ in response.context["percentiles"]] == ["image_creation"]


@pytest.mark.parametrize("path", [CHANGELIST, f"{CHANGELIST}dashboard/"])
def test_the_console_is_for_staff_only(owner: User, path: str) -> None:
    assert Client().get(path).status_code == 302
    client = Client()
    client.force_login(owner)
    response = client.get(path)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
