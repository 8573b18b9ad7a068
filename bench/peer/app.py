"""The peer's API: FastAPI, as a small FastAPI + Celery job service is usually written.

    uvicorn app:app --workers 2   # from bench/peer/

POST /tasks validates the job with pydantic (the same fields and limits as Back.Serv's
text-to-image), INSERTs its row and sends the Celery task with its id; GET /tasks/{id}
reads it back. Every request is authenticated by a bearer token looked up (by its hash)
in the tokens table, and a job is found only by its owner, as in Back.Serv.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session
from store import Job, SessionLocal, Token, token_hash
from worker import run_job

MAX_SEED = 2**32 - 1

app = FastAPI(title="Back.Serv's FastAPI + Celery peer")
bearer = HTTPBearer(auto_error=False)


class ImageCreationParams(BaseModel):
    """Back.Serv's text-to-image params and defaults (generation.specs)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    prompt: str = Field(min_length=1, max_length=2000)
    negative_prompt: str = ""
    width: int = Field(512, ge=64, le=1024, multiple_of=8)
    height: int = Field(512, ge=64, le=1024, multiple_of=8)
    steps: int = Field(25, ge=1, le=100)
    guidance_scale: float = Field(7.5, ge=0, le=30)
    # Chosen now and stored, so a rerun of the job makes the same image.
    seed: int = Field(default_factory=lambda: secrets.randbelow(MAX_SEED + 1), ge=0, le=MAX_SEED)
    num_images: int = Field(1, ge=1, le=4)


class TaskSubmit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task_type: Literal["image_creation"]
    params: ImageCreationParams


class TaskStatus(BaseModel):
    task_id: uuid.UUID
    task_type: str
    status: str
    params: dict[str, Any]
    submitted_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    result: dict[str, Any] | None
    error: str | None


def database() -> Iterator[Session]:
    with SessionLocal() as session:
        yield session


def current_user(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    session: Annotated[Session, Depends(database)],
) -> int:
    if credentials is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Bearer token required.")
    user_id = session.scalar(select(Token.user_id).where(Token.key_hash == token_hash(credentials.credentials)))
    if user_id is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Invalid token.")
    return user_id


@app.post("/tasks", status_code=status.HTTP_202_ACCEPTED)
def task_submit(
    body: TaskSubmit, user_id: Annotated[int, Depends(current_user)], session: Annotated[Session, Depends(database)]
) -> dict[str, Any]:
    job = Job(owner_id=user_id, task_type=body.task_type, params=body.params.model_dump())
    session.add(job)
    # Committed before the message goes: the worker must find the row.
    session.commit()
    run_job.delay(str(job.id))
    return {"task_id": str(job.id), "status": job.state}


@app.get("/tasks/{task_id}")
def task_status(
    task_id: uuid.UUID, user_id: Annotated[int, Depends(current_user)], session: Annotated[Session, Depends(database)]
) -> TaskStatus:
    job = session.scalar(select(Job).where(Job.id == task_id, Job.owner_id == user_id))
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "No such task.")
    return TaskStatus(
        task_id=job.id,
        task_type=job.task_type,
        status=job.state,
        params=job.params,
        submitted_at=job.submitted_at,
        started_at=job.started_at,
        completed_at=job.completed_at,
        result=job.result,
        error=job.error,
    )


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}
