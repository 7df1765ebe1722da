"""End to end: signed events published over a real mosquitto into `roadeye server run`,
then reviewed in headless Chromium with the keyboard; audit log checked; screenshots of
the queue, the event detail and the audit log written to tests/artifacts/server/."""

from __future__ import annotations

import csv
import io
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.event import (
    EventMessage,
    EvidenceKind,
    Heartbeat,
    ViolationType,
    event_topic,
    heartbeat_topic,
    status_topic,
)
from server.sample import SampleDevice, assemble, make_message
from tests.services import free_port, wait_port

pytestmark = [pytest.mark.services, pytest.mark.browser]
REPO = Path(__file__).resolve().parents[3]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ADMIN_PW = "admin-pass-123"
REVIEWER_PW = "reviewer-pass-123"
IMAGES_LOADED = "() => [...document.querySelectorAll('SEL')].every(i => i.complete && i.naturalWidth > 0)"


def _datasets() -> Path:
    return Path(os.environ.get("ROADEYE_DATASETS", REPO.parent / "shared" / "datasets"))


def real_messages(dev: SampleDevice, n: int) -> list[EventMessage]:
    """Events whose evidence is real imagery when the datasets are present: CCPD road
    frames (overview, real plate box and text, plate crop cut from it) and in-cabin photos
    with their labelled seat-belt box as the driver crop. Falls back to synthetic images."""
    root = _datasets()
    labels = root / "plates-cn-scenes" / "labels.csv"
    cabins = sorted((root / "occupants-seatbelt-incabin").glob("*/images/*.jpg"))
    if not labels.exists() or not cabins:
        return [make_message(dev, seed=i, captured_at=datetime.now(UTC) - timedelta(minutes=n - i),
                             violation=ViolationType.PHONE_USE if i % 3 == 2 else ViolationType.NO_SEATBELT)[0]
                for i in range(n)]
    rows = list(csv.DictReader(io.StringIO(labels.read_text())))[:n]
    out = []
    for i, row in enumerate(rows):
        scene = (root / "plates-cn-scenes" / row["file"]).read_bytes()
        img = cv2.imdecode(np.frombuffer(scene, np.uint8), cv2.IMREAD_COLOR)
        assert img is not None, row["file"]
        h, w = img.shape[:2]
        x1, y1, x2, y2 = (float(row[k]) for k in ("x1", "y1", "x2", "y2"))
        plate = img[max(0, int(y1) - 4):int(y2) + 4, max(0, int(x1) - 4):int(x2) + 4]
        plate_jpg = bytes(cv2.imencode(".jpg", plate, [cv2.IMWRITE_JPEG_QUALITY, 95])[1])
        veh = (max(0.0, x1 - 2.2 * (x2 - x1)), max(0.0, y1 - 5 * (y2 - y1)),
               min(w - 1.0, x2 + 2.2 * (x2 - x1)), min(h - 1.0, y2 + 1.5 * (y2 - y1)))
        cab_path = cabins[i % len(cabins)]
        cab = cv2.imread(str(cab_path))
        assert cab is not None, cab_path
        ch, cw = cab.shape[:2]
        cab_boxes = []
        lab = cab_path.parent.parent / "labels" / (cab_path.stem + ".txt")
        if lab.exists():
            for line in lab.read_text().split("\n"):
                if line.strip():
                    _, cx, cy, bw, bh = (float(v) for v in line.split()[:5])
                    cab_boxes.append(("seatbelt", ((cx - bw / 2) * cw, (cy - bh / 2) * ch,
                                                   (cx + bw / 2) * cw, (cy + bh / 2) * ch)))
        items = [
            (EvidenceKind.OVERVIEW, scene, w, h, [("car", veh), ("plate", (x1, y1, x2, y2))]),
            (EvidenceKind.DRIVER_CROP, cab_path.read_bytes(), cw, ch, cab_boxes),
            (EvidenceKind.PLATE_CROP, plate_jpg, plate.shape[1], plate.shape[0], []),
        ]
        msg, _ = assemble(dev, items, plate_text=row["plate"], plate_box=(x1, y1, x2, y2), vehicle_box=veh,
                          violation=ViolationType.PHONE_USE if i % 3 == 2 else ViolationType.NO_SEATBELT,
                          captured_at=datetime.now(UTC) - timedelta(minutes=n - i), seed=i)
        out.append(msg)
    return out


def _count(db: Path, where: str = "1=1") -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as c:
        try:
            return int(c.execute(f"SELECT count(*) FROM events WHERE {where}").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


@pytest.fixture
def server(mosquitto, tmp_path: Path):  # type: ignore[no-untyped-def]
    """`roadeye server run` (collector + web, SQLite) fed by a real broker."""
    dev = SampleDevice(device_id="edge-07", site_id="hefei-s312", camera_id="km14-north")
    pem = tmp_path / "edge-07.pub"
    pem.write_text(dev.public_pem)
    data = tmp_path / "srv"
    port = free_port()
    cmd = [sys.executable, "-m", "edge.cli", "server"]
    r = subprocess.run([*cmd, "adduser", "li.wei", "--role", "reviewer", "--password-stdin", "--data-dir", str(data)],
                       input=REVIEWER_PW + "\n", text=True, capture_output=True, cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([*cmd, "run", "--data-dir", str(data), "--mqtt-port", str(mosquitto.port),
                             "--http-port", str(port), "--admin", f"admin:{ADMIN_PW}",
                             "--register-device-key", f"edge-07={pem}", "--client-id", "e2e-collector"],
                            cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port("127.0.0.1", port, 60, proc)
        yield {"url": f"http://127.0.0.1:{port}", "device": dev, "db": data / "roadeye.db",
               "log": tmp_path / "server.log"}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def heartbeat(dev: SampleDevice, cameras: dict[str, bool]) -> bytes:
    now = datetime.now(UTC)
    return Heartbeat.model_validate({
        "device_id": dev.device_id, "site_id": dev.site_id, "sent_at": now, "uptime_s": 86400 * 3 + 5000,
        "clock": {"source": "gps", "synchronized": True, "offset_ms": 0.8}, "outbox_depth": 2,
        "outbox_bytes": 700_000,
        "cameras": {cam: {"connected": ok, "fps_in": 25.0 if ok else 0.0, "fps_analysed": 12.4 if ok else 0.0,
                          "frames_dropped": 3 if ok else 0, "reconnects": 0 if ok else 7,
                          "last_frame_at": now if ok else now - timedelta(minutes=4), "events_emitted": 8 if ok else 0}
                    for cam, ok in cameras.items()},
    }).model_dump_json().encode()


def publish(host: str, port: int, msgs: list[EventMessage], dev: SampleDevice | None = None) -> None:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="e2e-edge", protocol=mqtt.MQTTv5)
    c.connect(host, port)
    c.loop_start()
    for m in msgs:
        c.publish(event_topic(m.event.site_id, m.event.camera_id), m.to_bytes(), qos=1).wait_for_publish(10)
    if dev is not None:
        hb = heartbeat(dev, {dev.camera_id: True, "km14-south": False})
        c.publish(heartbeat_topic(dev.site_id, dev.device_id), hb, qos=1).wait_for_publish(10)
        c.publish(status_topic(dev.site_id, dev.device_id), b"online", qos=1, retain=True).wait_for_publish(10)
    c.disconnect()
    c.loop_stop()


def test_review_with_keyboard_and_audit(server, mosquitto, artifacts_dir: Path) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect, sync_playwright

    out = artifacts_dir / "server"
    out.mkdir(parents=True, exist_ok=True)
    msgs = real_messages(server["device"], 8)
    # the collector subscribes shortly after start; republish until everything is in (idempotent)
    deadline = time.monotonic() + 40
    while _count(server["db"]) < len(msgs):
        assert time.monotonic() < deadline, server["log"].read_text()[-3000:]
        publish(mosquitto.host, mosquitto.port, msgs, server["device"])
        time.sleep(1.0)
    assert _count(server["db"]) == len(msgs)  # duplicates from republishing stored once
    ids = [m.event.event_id for m in msgs]  # queue order: oldest first = publish order

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))

        page.goto(server["url"] + "/queue")
        expect(page).to_have_url(re.compile(r"/login\?next=%2Fqueue$"))
        page.fill("#username", "li.wei")
        page.fill("#password", "wrong-password")
        page.press("#password", "Enter")
        expect(page.locator("#login-error")).to_contain_text("wrong user name or password")
        page.fill("#password", REVIEWER_PW)
        page.press("#password", "Enter")
        page.wait_for_url("**/queue")
        review = page.locator("#review")
        expect(review).to_be_visible()
        expect(page.locator("#f-link")).to_have_attribute("href", f"/events/{ids[0]}")
        page.wait_for_function(IMAGES_LOADED.replace("SEL", "#review img"))
        # one rect per box of the first event's overview (real CCPD frames: car + plate; the synthetic
        # fallback without the datasets draws its own set)
        first_overview = next(e for e in msgs[0].event.evidence if e.kind == EvidenceKind.OVERVIEW)
        expect(page.locator("#overview svg rect")).to_have_count(len(first_overview.boxes))
        page.screenshot(path=str(out / "queue.png"))
        page.keyboard.press("z")
        expect(page.locator("#overview .frame")).to_have_attribute("style", re.compile(r"scale\("))
        page.wait_for_timeout(400)  # the zoom animates for 120 ms
        page.screenshot(path=str(out / "queue-zoomed.png"))
        page.keyboard.press("z")

        def at(i: int) -> None:
            expect(page.locator("#f-link")).to_have_attribute("href", f"/events/{ids[i]}")

        page.keyboard.press("c")                      # 0: confirm
        at(1)
        page.keyboard.press("r")                      # 1: reject, reason 2 (driver not visible)
        expect(page.locator("#reasons")).to_be_visible()
        page.screenshot(path=str(out / "queue-reject-reasons.png"))
        page.keyboard.press("2")
        at(2)
        page.keyboard.press("e")                      # 2: correct the plate, then confirm
        page.keyboard.press("Control+a")
        page.keyboard.type("皖A88888")
        page.keyboard.press("Enter")
        page.keyboard.press("c")
        at(3)
        page.keyboard.press("j")                      # 3: skip ...
        at(4)
        page.keyboard.press("k")                      # ... go back to it and reject (exempt vehicle)
        at(3)
        page.keyboard.press("r")
        page.keyboard.press("4")
        expect(page.locator("#count-mine")).to_have_text("4")
        page.keyboard.press("k")                      # history shows what was decided, read-only
        expect(page.locator("#btn-confirm")).to_be_disabled()
        page.keyboard.press("j")
        at(4)

        def status(i: int) -> str:
            with sqlite3.connect(server["db"]) as c:
                return str(c.execute("SELECT status FROM events WHERE event_id=?", (ids[i],)).fetchone()[0])

        deadline = time.monotonic() + 15
        while _count(server["db"], "status != 'pending'") < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [status(i) for i in range(5)] == ["confirmed", "rejected", "confirmed", "rejected", "pending"]
        with sqlite3.connect(server["db"]) as c:
            row = c.execute("SELECT plate_corrected FROM events WHERE event_id=?", (ids[2],)).fetchone()
            assert row[0] == "皖A88888"
            # decisions are saved in the background, so rows may commit in any order: key by event
            reasons = dict(c.execute("SELECT event_id, reason_code FROM reviews").fetchall())
        assert [reasons.get(i) for i in ids[:4]] == [None, "not_visible", None, "exempt_vehicle"] and len(reasons) == 4

        # event detail page, with boxes over every evidence image
        page.goto(f"{server['url']}/events/{ids[2]}")
        expect(page.locator(".plate-big")).to_have_text("皖A88888")
        page.wait_for_function(IMAGES_LOADED.replace("SEL", ".detail img"))
        assert page.locator(".detail svg rect").count() >= 2
        page.screenshot(path=str(out / "detail.png"), full_page=True)

        # reviewer may not read the audit log; the admin can
        page.goto(server["url"] + "/audit")
        assert "needs role admin" in page.content()
        page.goto(server["url"] + "/events")
        page.click("#logout")
        page.wait_for_url("**/login")
        page.fill("#username", "admin")
        page.fill("#password", ADMIN_PW)
        page.press("#password", "Enter")
        page.wait_for_url(lambda u: not u.endswith("/login"))
        page.goto(server["url"] + "/audit?action=review.")
        rows = page.locator(".audit-table tbody tr")
        expect(rows).to_have_count(4)
        table = page.locator(".audit-table")
        for text in ("review.reject", "review.confirm", "exempt_vehicle", "not_visible"):
            expect(table).to_contain_text(text)
        assert all("li.wei" in t for t in rows.all_inner_texts())
        expect(page.locator(".audit-table")).to_contain_text("皖A88888")
        page.screenshot(path=str(out / "audit.png"), full_page=True)
        page.goto(server["url"] + "/events")
        page.screenshot(path=str(out / "events.png"))
        page.goto(server["url"] + "/health")
        expect(page.locator(".device-card")).to_contain_text("edge-07")
        expect(page.locator(".device-card")).to_contain_text("disconnected")
        page.screenshot(path=str(out / "health.png"))

        # admin pages: create a user with the form, deactivate the device with its button
        page.goto(server["url"] + "/users")
        page.fill("form[data-api] input[name=username]", "zhang.min")
        page.select_option("form[data-api] select[name=role]", "reviewer")
        page.fill("form[data-api] input[name=password]", "short")
        page.fill("form[data-api] input[name=password]", "zhang-min-password")
        page.click("form[data-api] button[type=submit]")
        expect(page.locator("table.grid")).to_contain_text("zhang.min")
        page.goto(server["url"] + "/devices")
        page.once("dialog", lambda d: d.accept())
        page.click("button[data-post='/api/devices/edge-07/deactivate']")
        expect(page.locator("table.grid")).to_contain_text("deactivated")
        page.screenshot(path=str(out / "devices.png"))
        browser.close()
    errors = [e for e in errors if "401" not in e and "403" not in e]  # the deliberate wrong-password / forbidden
    assert not errors, errors
