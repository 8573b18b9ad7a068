"""Every task type end to end: submit over the API, the in-process worker runs the tiny
model, and the stored output is checked for real."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable
from typing import Any

import av
import numpy as np
from django.core.files.storage import default_storage
from PIL import Image
from rest_framework.test import APIClient

from tasks.models import Task, TaskEvent, TaskState
from tests.conftest import InProcessWorker, wait_for_state
from tests.generation.conftest import astronaut_path, output_bytes, output_image, png_bytes

RunJob = Callable[..., Task]


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def upload(client: APIClient, data: bytes, name: str = "image.png") -> str:
    response = client.post("/api/v1/uploads", {"file": io.BytesIO(data)}, format="multipart")
    assert response.status_code == 201, response.content
    return response.json()["reference"]


def test_text_to_image_makes_a_png_of_the_asked_size_and_a_seed_repeats_it(run_job: RunJob) -> None:
    params = {"prompt": "a lighthouse", "width": 64, "height": 80, "steps": 3, "seed": 11}
    first, second = run_job("image_creation", params), run_job("image_creation", params)
    assert first.state == TaskState.SUCCESS, first.error_message
    assert output_image(first).size == (64, 80)
    assert first.result["outputs"][0]["width"] == 64 and first.result["outputs"][0]["height"] == 80
    assert output_bytes(first) == output_bytes(second)


def test_image_to_image_redraws_the_input_at_its_size(run_job: RunJob) -> None:
    source = png_bytes(64, 72, seed=1)
    params = {"image": data_uri(source), "prompt": "oil painting", "strength": 0.6, "steps": 4, "seed": 5}
    first, second = run_job("image_to_image", params), run_job("image_to_image", params)
    assert first.state == TaskState.SUCCESS, first.error_message
    redrawn = output_image(first)
    assert redrawn.size == (64, 72)
    assert not np.array_equal(np.asarray(redrawn), np.asarray(Image.open(io.BytesIO(source)).convert("RGB")))
    assert first.result["steps_run"] == 2  # strength x steps
    assert output_bytes(first) == output_bytes(second)


def test_diffusion_upscale_gives_exactly_scale_times_the_input(run_job: RunJob) -> None:
    source = data_uri(png_bytes(20, 28, seed=2))
    for scale in (2, 4):
        task = run_job("image_upscale", {"image": source, "scale_factor": scale, "steps": 2, "seed": 1})
        assert task.state == TaskState.SUCCESS, task.error_message
        assert task.result["method"] == "diffusion"
        assert output_image(task).size == (20 * scale, 28 * scale)


def test_lanczos_upscale_takes_image_url_and_says_which_method_ran(run_job: RunJob) -> None:
    task = run_job("image_upscale", {"image_url": data_uri(png_bytes(30, 17)), "scale_factor": 4, "method": "lanczos"})
    assert task.state == TaskState.SUCCESS, task.error_message
    assert task.result["method"] == "lanczos"
    assert output_image(task).size == (120, 68)


def test_face_swap_changes_the_target_face_and_leaves_far_pixels_alone(client: APIClient, run_job: RunJob) -> None:
    target = Image.open(astronaut_path()).convert("RGB")
    # Another face: the astronaut mirrored, with red and blue exchanged.
    source = Image.fromarray(np.ascontiguousarray(np.asarray(target)[:, ::-1, ::-1]))
    buffer = io.BytesIO()
    source.save(buffer, format="PNG")
    task = run_job(
        "face_swap",
        {
            "source_image": upload(client, buffer.getvalue()),
            "target_image": upload(client, astronaut_path().read_bytes()),
        },
    )
    assert task.state == TaskState.SUCCESS, task.error_message
    assert task.result["faces_swapped"] == 1
    swapped = np.asarray(output_image(task)).astype(int)
    changed = np.abs(swapped - np.asarray(target).astype(int)).sum(axis=2) > 0
    assert swapped.shape == (512, 512, 3)
    # The astronaut's face lies around x 177-270, y 67-160.
    face = np.zeros_like(changed)
    face[67:160, 177:270] = True
    assert changed[face].mean() > 0.5
    near_face = np.zeros_like(changed)
    near_face[47:180, 157:290] = True
    assert not changed[~near_face].any()


def test_face_swap_without_a_face_fails_with_no_face_found(client: APIClient, run_job: RunJob) -> None:
    gradient = np.tile(np.linspace(0, 255, 128, dtype=np.uint8), (128, 1))
    buffer = io.BytesIO()
    Image.fromarray(np.stack([gradient] * 3, axis=-1)).save(buffer, format="PNG")
    task = run_job(
        "face_swap",
        {"source_image": upload(client, astronaut_path().read_bytes()), "target_image": data_uri(buffer.getvalue())},
    )
    assert task.state == TaskState.FAILURE
    assert task.error_code == "NO_FACE_FOUND"
    assert "target_image" in task.error_message


def test_video_creation_writes_an_h264_mp4_of_duration_times_fps_frames(run_job: RunJob) -> None:
    params = {"prompt": "waves", "duration": 1, "fps": 6, "width": 64, "height": 64, "steps": 3, "seed": 9}
    first, second = run_job("video_creation", params), run_job("video_creation", params)
    assert first.state == TaskState.SUCCESS, first.error_message
    assert {key: first.result[key] for key in ("duration", "fps", "frames", "width", "height")} == {
        "duration": 1.0,
        "fps": 6,
        "frames": 6,
        "width": 64,
        "height": 64,
    }
    assert first.result["url"].endswith(".mp4")
    assert first.result["outputs"][0]["content_type"] == "video/mp4"
    with av.open(io.BytesIO(output_bytes(first))) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert stream.average_rate == 6
        frames = [frame.to_image() for frame in container.decode(stream)]
    assert len(frames) == 6
    assert frames[0].size == (64, 64)
    assert output_bytes(first) == output_bytes(second)


def test_a_later_job_can_take_an_earlier_jobs_output(run_job: RunJob) -> None:
    created = run_job("image_creation", {"prompt": "a cat", "width": 64, "height": 64, "steps": 2, "seed": 3})
    upscaled = run_job("image_upscale", {"image": f"task:{created.pk}", "scale_factor": 2, "method": "lanczos"})
    assert upscaled.state == TaskState.SUCCESS, upscaled.error_message
    assert output_image(upscaled).size == (128, 128)


def test_deleting_a_job_deletes_its_files(client: APIClient, run_job: RunJob) -> None:
    task = run_job("image_upscale", {"image": data_uri(png_bytes(16, 16)), "scale_factor": 2, "method": "lanczos"})
    path = task.result["outputs"][0]["path"]
    assert default_storage.exists(path)
    assert client.delete(f"/api/v1/tasks/{task.pk}").status_code == 200
    assert not default_storage.exists(path)


def test_a_running_job_cancelled_stops_within_one_step(client: APIClient, worker: InProcessWorker) -> None:
    params: dict[str, Any] = {"prompt": "slow", "width": 64, "height": 64, "steps": 100, "seed": 1}
    task_id = client.post("/api/v1/tasks", {"task_type": "image_creation", "params": params}, format="json").json()[
        "task_id"
    ]
    wait_for_state(task_id, {TaskState.STARTED})
    deadline = time.monotonic() + 60
    while not TaskEvent.objects.filter(task_id=task_id, type=TaskEvent.Type.PROGRESS).exists():
        assert time.monotonic() < deadline, "the job reported no step"
        time.sleep(0.005)
    assert client.post(f"/api/v1/tasks/{task_id}/cancel").status_code == 200
    task = worker.wait_for(task_id)
    assert task.state == TaskState.REVOKED
    assert task.result is None
    events = list(TaskEvent.objects.filter(task_id=task_id).order_by("id"))
    cancel_index = next(i for i, event in enumerate(events) if event.type == TaskEvent.Type.CANCEL_REQUESTED)
    steps_after_cancel = [event for event in events[cancel_index:] if event.type == TaskEvent.Type.PROGRESS]
    # The flag is read before each step's progress is written: at most the step already under way reports.
    assert len(steps_after_cancel) <= 1
    assert max(event.data["step"] for event in events if event.type == TaskEvent.Type.PROGRESS) < 100
    assert not default_storage.exists(f"outputs/{task_id}")
