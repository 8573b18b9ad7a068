"""A web process settles its heap once its application is built."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from backserv_site.heap import settle_after_startup


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_a_web_process_freezes_its_views_and_machinery(unfrozen: None) -> None:
    from tasks.api import views

    settle_after_startup()
    assert gc.get_freeze_count() > 0
    # The views were imported before the freeze, so full passes leave them out.
    assert not any(obj is views.TaskListCreateView for obj in gc.get_objects())


def test_objects_made_after_the_freeze_are_still_collected(unfrozen: None) -> None:
    settle_after_startup()

    class Cycle:
        def __init__(self) -> None:
            self.me = self

    made = Cycle()
    gone = weakref.ref(made)
    del made
    gc.collect()
    assert gone() is None
