"""The peer's database: users, their API tokens and the jobs, with SQLAlchemy 2 on
psycopg 3, the way a FastAPI + Celery service usually keeps them. Shared by the API
(app.py) and the worker (worker.py).

    python store.py reset USERNAME   # tables created, jobs deleted, a new token printed
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, String, create_engine, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/backserv_peer"
TOKEN_PREFIX = "peer_"

engine = create_engine(os.environ.get("PEER_DATABASE_URL", DEFAULT_DATABASE_URL))
SessionLocal = sessionmaker(engine, expire_on_commit=False)


def now() -> datetime:
    return datetime.now(UTC)


def token_hash(secret: str) -> str:
    """Tokens are stored as their SHA-256 only: a leaked table leaks no usable token."""
    return hashlib.sha256(secret.encode()).hexdigest()


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON().with_variant(JSONB(), "postgresql")}


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(150), unique=True)


class Token(Base):
    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    task_type: Mapped[str] = mapped_column(String(50))
    params: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(20), default="PENDING")
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    result: Mapped[dict[str, Any] | None]
    error: Mapped[str | None]


def reset(username: str) -> str:
    """The tables, created if missing; every job deleted (TRUNCATE: no dead rows left
    for later reads to step over); a new token for `username`, returned once."""
    Base.metadata.create_all(engine)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with SessionLocal.begin() as session:
        session.execute(text("TRUNCATE jobs"))
        user = session.scalar(select(User).where(User.username == username))
        if user is None:
            user = User(username=username)
            session.add(user)
            session.flush()
        session.add(Token(user_id=user.id, key_hash=token_hash(secret)))
    return secret


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "reset":
        sys.exit(__doc__)
    print(reset(sys.argv[2]))
