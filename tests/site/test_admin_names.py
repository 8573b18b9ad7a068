"""The admin's index names each model as a person would: plurals and initialisms right."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import User


@pytest.mark.django_db
def test_the_admin_index_names_models_in_plain_english(staff: User) -> None:
    console = Client()
    console.force_login(staff)
    html = console.get("/admin/").content.decode()

    assert "Webhook deliveries" in html and "deliverys" not in html
    assert "API tokens" in html and "Api tokens" not in html
    assert "Load balancer<" in html and "Load balancers" not in html
