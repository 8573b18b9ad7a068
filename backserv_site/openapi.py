"""The /api/v1 schema read as a table of contents: every operation under one tag of what
it is about (jobs, uploads, tokens, ...), each tag described in a line.

Tags come from the path, in one table here, rather than from each view: a route added
later lands under its neighbours' tag without anyone remembering to say so, and
tests/client/test_schema.py fails for one that matches no tag.
"""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema

API_PREFIX = "/api/v1/"

# (tag, description, the paths under /api/v1/ it holds), in the order the docs list them.
# The patterns do not overlap: a path has one tag.
TAGS: list[tuple[str, str, str]] = [
    (
        "jobs",
        "Submit jobs (one, a batch, or waiting for the result), follow, cancel, retry and delete them.",
        r"^tasks(?!/[^/]+/webhooks$)(/|$)",
    ),
    ("uploads", "Input images stored once and named by later jobs as `upload:<id>`.", r"^uploads(/|$)"),
    ("tokens", "Your API tokens: list, create (shown once), revoke.", r"^tokens(/|$)"),
    (
        "webhooks",
        "Where your jobs are reported: the signing secret, each job's deliveries, redelivery.",
        r"^(webhook-secret$|webhook-deliveries/|tasks/[^/]+/webhooks$)",
    ),
    (
        "task types",
        "What can be run: each type's params (JSON Schema), defaults, limits, models, availability.",
        r"^task-types(/|$)",
    ),
    ("usage", "Your finished jobs and GPU seconds over a range of days, by type and by day.", r"^usage$"),
    (
        "servers",
        "Staff: GPU servers (register, heartbeat, maintenance, metrics) and the load balancer.",
        r"^(servers(/|$)|stats/load-balancer)",
    ),
    ("stats", "Staff: a day of jobs, by hour, and per server.", r"^stats/(?!load-balancer)"),
]

_MATCHERS = [(name, re.compile(pattern)) for name, _, pattern in TAGS]


def tag_of(path: str) -> str | None:
    """The tag of an /api/v1 path as the schema writes it (`/api/v1/tasks/{task_id}`)."""
    if not path.startswith(API_PREFIX):
        return None
    rest = path[len(API_PREFIX) :]
    return next((name for name, pattern in _MATCHERS if pattern.search(rest)), None)


class AutoSchema(SpectacularAutoSchema):
    def get_tags(self) -> list[str]:
        tag = tag_of(self.path)
        return [tag] if tag is not None else super().get_tags()


def describe_tags(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """A drf-spectacular postprocessing hook: the schema's top-level `tags`, each with its
    line, for those its /api/v1 operations use (the distributed document's schema, whose
    routes are elsewhere, gets none)."""
    ours = [operations for path, operations in result.get("paths", {}).items() if path.startswith(API_PREFIX)]
    used = {tag for operations in ours for operation in operations.values() for tag in operation.get("tags", [])}
    result["tags"] = [{"name": name, "description": description} for name, description, _ in TAGS if name in used]
    return result
