"""The operator's page in a real browser: a real CREATE of a VM over TCP, Debian's
chromium (headless, driven by selenium) showing the container's row and its machine with
the state highlighted, never its token or password; after the DESTROY, the page's own
refresh shows "no live containers". No browser process outlives the test."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from serverharness import serve_web

from anweddol_actors.client import Client
from anweddol_actors.lifecycle.render import HIGHLIGHT

pytestmark = pytest.mark.vm

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Bounds of the browser's waits: the page polls every 2 s, a machine is drawn in well
# under a second; these leave room for a machine busy with a guest booting.
PAGE_WAIT = 60
PROCESS_WAIT = 20


def start_browser(profile: Path) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1300,1000",
        # Nothing but the page's own server: no update checks, no sign-in, no telemetry.
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` now (chromedriver's browser and its helpers)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue  # ended meanwhile
            for child in map(int, children):
                if child not in found:
                    found.add(child)
                    todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status  # a zombie has ended: only its parent's wait is due


def row_state(driver: webdriver.Chrome, container_uuid: str) -> str | None:
    rows = driver.find_elements(By.CSS_SELECTOR, f'tr.container[data-uuid="{container_uuid}"]')
    return rows[0].get_attribute("data-state") if rows else None


def highlighted_states(driver: webdriver.Chrome, container_uuid: str) -> list[str]:
    """The states drawn highlighted in the container's machine, as the browser shows it."""
    return driver.execute_script(
        """
        const svg = document.querySelector(`tr.detail[data-uuid="${arguments[0]}"] svg`);
        if (!svg) return [];
        return [...svg.querySelectorAll("g.node")]
          .filter((node) => {
            const shape = node.querySelector("path, polygon");
            return shape && shape.getAttribute("fill") === arguments[1];
          })
          .map((node) => node.querySelector("title").textContent);
        """,
        container_uuid,
        HIGHLIGHT,
    )


def test_the_page_shows_a_live_container_then_none(make_vm_server, tmp_path):
    running = make_vm_server()
    web = serve_web(running.engine, enable_ui=True)
    client = Client(*running.address, timeout=240)
    created = None
    driver = None
    browser_pids: set[int] = set()
    profile = Path(tempfile.mkdtemp(prefix="ui-chromium-", dir=tmp_path))
    try:
        created = client.create()
        assert created["success"] is True, created
        data = created["data"]
        container_uuid = data["container_uuid"]
        secrets = (data["client_token"], data["container_password"])

        state = httpx.get(f"{web.url}/ui/api/state", timeout=30)
        assert state.status_code == 200
        assert container_uuid in state.text
        for secret in secrets:
            assert secret not in state.text

        driver = start_browser(profile)
        driver.get(f"{web.url}/ui/")
        browser_pids = {driver.service.process.pid} | descendants(driver.service.process.pid)
        waiting = WebDriverWait(driver, PAGE_WAIT, poll_frequency=0.2)
        waiting.until(lambda d: row_state(d, container_uuid) == "started_serving")
        waiting.until(lambda d: highlighted_states(d, container_uuid) == ["started_serving"])
        row = driver.find_element(By.CSS_SELECTOR, f'tr.container[data-uuid="{container_uuid}"]')
        cells = [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
        assert cells[0] == container_uuid and cells[1] == "started_serving"
        assert cells[3] == "127.0.0.1" and cells[4] == str(data["container_listen_port"])
        page = driver.page_source
        for secret in secrets:
            assert secret not in page
        assert "administer" in page  # the journal history is on the page

        shot = tmp_path / "ui.png"
        assert driver.save_screenshot(str(shot))
        assert shot.read_bytes().startswith(b"\x89PNG")
        if os.environ.get("ANWEDDOL_UI_SCREENSHOT"):
            shutil.copyfile(shot, os.environ["ANWEDDOL_UI_SCREENSHOT"])

        destroyed = client.destroy(container_uuid, data["client_token"])
        assert destroyed["success"] is True, destroyed
        created = None
        empty = driver.find_element(By.ID, "empty")
        waiting.until(lambda d: empty.is_displayed())
        assert empty.text == "no live containers"
        assert driver.find_elements(By.CSS_SELECTOR, "tr.container") == []
    finally:
        if driver is not None:
            browser_pids |= {driver.service.process.pid} | descendants(driver.service.process.pid)
            driver.quit()
        web.stop()
        if created is not None and created.get("success"):
            client.destroy(created["data"]["container_uuid"], created["data"]["client_token"])
    deadline = time.monotonic() + PROCESS_WAIT
    while any(alive(pid) for pid in browser_pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = sorted(pid for pid in browser_pids if alive(pid))
    for pid in left:
        os.kill(pid, signal.SIGKILL)  # by PID, ours: named in the failure below
    assert left == [], f"browser processes outlived the test: {left}"
    assert browser_pids, "the browser's processes were not seen"
