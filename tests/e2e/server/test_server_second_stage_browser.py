"""Two-stage review in the browser: a first reviewer's decision waits for a second,
different reviewer, who sees the first decision and makes the final one."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from edge.event import event_topic
from server.db.engine import Database
from server.db.models import Device
from server.evidence_store import LocalEvidenceStore
from server.ingest import Ingestor, Outcome
from server.sample import SampleDevice, make_message
from tests.services import free_port, wait_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[3]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def test_second_stage_review(tmp_path: Path, artifacts_dir: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    data = tmp_path / "srv"
    db = Database(f"sqlite:///{(data / 'roadeye.db').resolve()}")
    dev = SampleDevice()
    with db.session() as s:
        s.add(Device(device_id=dev.device_id, public_key_pem=dev.public_pem, site_id=dev.site_id))
    ing = Ingestor(db, LocalEvidenceStore(data / "evidence"))
    msg, _ = make_message(dev, seed=3)
    assert ing.ingest(event_topic(dev.site_id, dev.camera_id), msg.to_bytes()) == Outcome.STORED
    db.dispose()
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "server", "web", "--data-dir", str(data),
                             "--http-port", str(port), "--second-stage-review", "--admin", "first:first-password",
                             "--admin", "second:second-password"], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_port("127.0.0.1", port, 60, proc)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1500, "height": 950})

            def login(user: str) -> None:
                page.goto(url + "/login?next=/queue")
                page.fill("#username", user)
                page.fill("#password", f"{user}-password")
                page.press("#password", "Enter")
                page.wait_for_url("**/queue")

            login("first")
            expect(page.locator("#f-link")).to_have_attribute("href", f"/events/{msg.event.event_id}")
            page.keyboard.press("c")
            expect(page.locator("#empty")).to_be_visible()
            page.click("button.stage[data-stage='2']")
            expect(page.locator("#empty")).to_be_visible()  # nobody reviews their own decision twice
            page.click("#logout")
            page.wait_for_url("**/login")
            login("second")
            page.click("button.stage[data-stage='2']")
            expect(page.locator("#f-prior")).to_contain_text("1st review by first: confirmed")
            expect(page.locator("#f-stage")).to_have_text("2nd review")
            page.screenshot(path=str(artifacts_dir / "server" / "queue-second-stage.png"))
            page.keyboard.press("r")
            page.keyboard.press("1")
            expect(page.locator("#empty")).to_be_visible()
            browser.close()
        with sqlite3.connect(data / "roadeye.db") as c:
            assert c.execute("SELECT status FROM events").fetchone()[0] == "rejected"
            rows = c.execute("SELECT stage, decision, reason_code FROM reviews ORDER BY stage").fetchall()
        assert rows == [(1, "confirmed", None), (2, "rejected", "not_violation")]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
