"""The dashboard in a real headless browser (Debian's chromium through chromedriver):
it logs in through the admin form and checks the charts render with data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from accounts.models import User
from tasks import services
from tasks.models import Task

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOT = Path(settings.VAR_DIR) / "screenshots" / "dashboard.png"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
        reason=f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}): "
        "apt-get install -y chromium chromium-driver",
    ),
]


@pytest.fixture
def browser() -> Any:
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (requirements/dev.txt)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1600"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _some_jobs(owner: User) -> None:
    for outcome in ("succeed", "succeed", "fail"):
        task = services.task_submit(owner=owner, task_type="image_creation", params={"prompt": "x"})
        services.task_claim(task_id=task.pk, worker="gpu-1:1")
        task = Task.objects.get(pk=task.pk)
        services.task_start(task=task)
        if outcome == "succeed":
            services.task_succeed(task=task, result={})
        else:
            services.task_fail(task=task, code="PIPELINE_ERROR", message="boom")
    services.task_submit(owner=owner, task_type="image_creation", params={"prompt": "waiting"})


@pytest.mark.django_db(transaction=True)
def test_the_dashboard_renders_its_charts_with_data_in_chromium(live_server: Any, browser: Any, owner: User) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    User.objects.create_user(username="console", password="console-pass-1234", is_staff=True, is_superuser=True)
    _some_jobs(owner)

    browser.get(f"{live_server.url}/admin/login/?next=/admin/tasks/task/dashboard/")
    browser.find_element(By.NAME, "username").send_keys("console")
    browser.find_element(By.NAME, "password").send_keys("console-pass-1234")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()

    # The click only starts the login's POST and redirect: wait for the dashboard page.
    dashboard = WebDriverWait(browser, 30).until(expected_conditions.presence_of_element_located((By.ID, "dashboard")))
    assert dashboard.is_displayed()
    bars = browser.find_elements(By.CSS_SELECTOR, "#chart-states rect.bar")
    values = {bar.get_attribute("data-label"): float(bar.get_attribute("data-value")) for bar in bars}
    assert values["SUCCESS"] == 2 and values["FAILURE"] == 1 and values["PENDING"] == 1
    # Drawn, not just present: the browser laid the bars out with a real height.
    success_bar = next(bar for bar in bars if bar.get_attribute("data-label") == "SUCCESS")
    assert success_bar.rect["height"] > 10
    created = browser.find_element(By.CSS_SELECTOR, '#chart-hourly polyline[data-series="created"]')
    assert created.get_attribute("data-total") == "4" and created.rect["width"] > 100
    assert browser.find_element(By.ID, "card-success").text.startswith("66.7%")
    assert "image_creation" in browser.find_element(By.ID, "percentiles").text

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 10_000
