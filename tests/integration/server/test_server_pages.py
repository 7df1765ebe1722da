"""Every HTML page goes through one login + role dependency: anonymous -> login redirect
(back to the page afterwards), too small a role -> 403 page, enough -> the page."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest

from server.db.engine import Database
from server.evidence_store import LocalEvidenceStore
from server.ingest import Ingestor
from server.sample import SampleDevice, make_message

from .conftest import login, make_client

PAGES = {  # path -> least role
    "/queue": "reviewer", "/events": "viewer", "/events?status=pending&page=1": "viewer", "/health": "viewer",
    "/devices": "viewer", "/audit": "admin", "/users": "admin", "/dead-letters": "admin",
}
RANK = {"viewer": 0, "reviewer": 1, "admin": 2}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_every_page_checks_login_and_role(db: Database, store: LocalEvidenceStore, ingestor: Ingestor,  # type: ignore[no-untyped-def]
                                          device: SampleDevice, tmp_path: Path, users) -> None:
    msg = make_message(device, seed=1)[0]
    ingestor.ingest(f"roadeye/v1/{device.site_id}/{device.camera_id}/events", msg.to_bytes())
    pages = dict(PAGES, **{f"/events/{msg.event.event_id}": "viewer"})
    anon = make_client(db, store, tmp_path / "web")
    for path in pages:
        r = anon.get(path, follow_redirects=False, headers={"accept": "text/html"})
        assert r.status_code == 303, path
        assert r.headers["location"] == f"/login?next={quote(path, safe='')}", path
    for user, role in (("view", "viewer"), ("rev1", "reviewer"), ("admin", "admin")):
        c = make_client(db, store, tmp_path / "web")
        login(c, user)
        for path, need in pages.items():
            r = c.get(path, follow_redirects=False, headers={"accept": "text/html"})
            if RANK[role] >= RANK[need]:
                assert r.status_code == 200 and "<html" in r.text.lower(), (user, path, r.status_code)
            else:
                assert r.status_code == 403 and f"needs role {need}" in r.text, (user, path, r.status_code)
    c = make_client(db, store, tmp_path / "web")
    login(c, "view")
    assert c.get("/events/0190a000-0000-7000-8000-000000000000", headers={"accept": "text/html"}).status_code == 404
