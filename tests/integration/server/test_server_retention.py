"""Evidence retention on SQLite and PostgreSQL: old reviewed events lose their images (only
blobs nobody else uses), keep their signed JSON and audit trail; verify says "purged"."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import insert, select, update

from server.db.engine import Database, current_revision, make_engine, upgrade
from server.db.models import AuditLog, EventRow, EvidenceRow
from server.evidence_store import LocalEvidenceStore
from server.ingest import Ingestor, Outcome, event_values
from server.retention import RetentionPolicy, purge_evidence
from server.sample import SampleDevice, make_message
from server.services import verify_all

from .conftest import login, make_client

pytestmark = pytest.mark.services
NOW = datetime.now(UTC)


def _event(ingestor: Ingestor, device: SampleDevice, seed: int, status: str | None, age_days: float) -> str:
    msg = make_message(device, seed=seed)[0]
    assert ingestor.ingest(f"roadeye/v1/{device.site_id}/{device.camera_id}/events", msg.to_bytes()) == Outcome.STORED
    if status is not None:
        with ingestor.db.session() as s:
            s.execute(update(EventRow).where(EventRow.event_id == msg.event.event_id)
                      .values(status=status, finalized_at=NOW - timedelta(days=age_days)))
    return msg.event.event_id


def _shas(db: Database, event_id: str) -> list[str]:
    with db.session() as s:
        return list(s.scalars(select(EvidenceRow.sha256).where(EvidenceRow.event_id == event_id)))


def test_retention_purges_only_old_reviewed_unshared_evidence(db: Database, store: LocalEvidenceStore,  # type: ignore[no-untyped-def]
                                                               ingestor: Ingestor, device: SampleDevice,
                                                               tmp_path: Path, users) -> None:
    a = _event(ingestor, device, 1, "rejected", 40)
    b = _event(ingestor, device, 2, "confirmed", 40)
    c = _event(ingestor, device, 3, "rejected", 5)  # too recent
    d = _event(ingestor, device, 4, None, 0)  # pending: never purged, however old
    e = _event(ingestor, device, 7, "confirmed", 40)
    f = _event(ingestor, device, 7, None, 0)  # same images as e (seed 7): shared blobs
    assert set(_shas(db, e)) == set(_shas(db, f))
    policy = RetentionPolicy(rejected_days=30, confirmed_days=30)

    dry = purge_evidence(db, store, policy, dry_run=True)
    assert (dry.events, dry.blobs_deleted, dry.blobs_shared_kept) == (3, 6, 3)
    assert sorted(dry.event_ids) == sorted([a, b, e])
    assert all(store.exists(sha) for ev in (a, b, c, d, e) for sha in _shas(db, ev))  # nothing changed
    with db.session() as s:
        assert s.scalar(select(EventRow).where(EventRow.evidence_purged_at.is_not(None))) is None

    with db.session() as s:
        before_json = {r.event_id: r.event_json for r in s.scalars(select(EventRow))}
    rep = purge_evidence(db, store, policy)
    assert (rep.events, rep.blobs_deleted, rep.blobs_shared_kept) == (3, 6, 3)
    assert rep.bytes_deleted > 0
    assert not any(store.exists(sha) for ev in (a, b) for sha in _shas(db, ev))
    assert all(store.exists(sha) for ev in (c, d, e, f) for sha in _shas(db, ev))
    with db.session() as s:
        rows = {r.event_id: r for r in s.scalars(select(EventRow))}
        assert {k for k, r in rows.items() if r.evidence_purged_at is not None} == {a, b, e}
        assert {k: r.event_json for k, r in rows.items()} == before_json  # signed events untouched
        assert rows[a].status == "rejected"
        purged_audit = {r.target for r in s.scalars(select(AuditLog).where(AuditLog.action == "event.evidence_purge"))}
        assert purged_audit == {f"event:{x}" for x in (a, b, e)}
        run = s.scalars(select(AuditLog).where(AuditLog.action == "retention.run")).one()
        assert run.after is not None and run.after["events"] == 3 and run.after["blobs_deleted"] == 6

    rep_v = verify_all_now(db, store)
    assert rep_v.ok, rep_v.problems
    assert (rep_v.purged_events, rep_v.evidence_purged) == (3, 9)

    assert purge_evidence(db, store, policy).events == 0  # idempotent

    # the API: purged images are 410 Gone (not 404), live ones still served; detail says when
    client = make_client(db, store, tmp_path / "web")
    login(client, "view")
    assert client.get(f"/api/evidence/{_shas(db, a)[0]}").status_code == 410
    assert client.get(f"/api/evidence/{_shas(db, c)[0]}").status_code == 200
    assert client.get(f"/api/evidence/{_shas(db, e)[0]}").status_code == 200  # shared with live f
    assert client.get(f"/api/events/{a}").json()["evidence_purged_at"] is not None
    assert client.get(f"/api/events/{c}").json()["evidence_purged_at"] is None
    page = client.get(f"/events/{a}", headers={"accept": "text/html"}).text
    assert "deleted under the retention policy" in page and f"/api/evidence/{_shas(db, a)[0]}" not in page
    assert f"/api/evidence/{_shas(db, c)[0]}" in client.get(f"/events/{c}", headers={"accept": "text/html"}).text

    # once f is reviewed and old too, the shared blobs go
    with db.session() as s:
        s.execute(update(EventRow).where(EventRow.event_id == f)
                  .values(status="confirmed", finalized_at=NOW - timedelta(days=31)))
    rep2 = purge_evidence(db, store, policy)
    assert (rep2.events, rep2.blobs_deleted, rep2.blobs_shared_kept) == (1, 3, 0)
    assert not any(store.exists(sha) for sha in _shas(db, f))

    # a blob missing for an event that was NOT purged is still a problem
    store.delete(_shas(db, c)[0])
    bad = verify_all_now(db, store)
    assert not bad.ok and any(c in p and "missing" in p for p in bad.problems), bad.problems


def verify_all_now(db: Database, store: LocalEvidenceStore):  # type: ignore[no-untyped-def]
    with db.session() as s:
        return verify_all(s, store)


def test_a_crash_between_marking_and_deleting_is_swept_next_run(db: Database, store: LocalEvidenceStore,
                                                                 ingestor: Ingestor, device: SampleDevice) -> None:
    a = _event(ingestor, device, 11, "rejected", 40)
    with db.session() as s:  # what a run that died after its commit leaves behind
        s.execute(update(EventRow).where(EventRow.event_id == a).values(evidence_purged_at=NOW))
    assert all(store.exists(sha) for sha in _shas(db, a))
    rep = purge_evidence(db, store, RetentionPolicy(rejected_days=30))
    assert rep.events == 0 and rep.leftovers_deleted == 3
    assert not any(store.exists(sha) for sha in _shas(db, a))


def test_policy_and_cli_errors() -> None:
    with pytest.raises(ValueError, match="rejected_days and/or confirmed_days"):
        RetentionPolicy()
    with pytest.raises(ValueError, match="confirmed_days must be >= 0"):
        RetentionPolicy(confirmed_days=-1)
    from edge.cli import main

    r = CliRunner().invoke(main, ["server", "retention", "--data-dir", "/nonexistent-unused"])
    assert r.exit_code == 2 and "--rejected-days N and/or --confirmed-days M" in r.output


def test_cli_retention_dry_run_and_run(tmp_path: Path) -> None:
    from edge.cli import main

    data = tmp_path / "data"
    db = Database(f"sqlite:///{data / 'roadeye.db'}")
    store = LocalEvidenceStore(data / "evidence")
    dev = SampleDevice()
    from .conftest import register
    register(db, dev)
    a = _event(Ingestor(db, store), dev, 1, "rejected", 10)
    args = ["server", "retention", "--data-dir", str(data), "--rejected-days", "7"]
    r = CliRunner().invoke(main, [*args, "--dry-run"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output[r.output.index("{"):])
    assert out["dry_run"] and out["events"] == 1 and out["event_ids"] == [a]
    assert all(store.exists(sha) for sha in _shas(db, a))
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output[r.output.index("{"):])["blobs_deleted"] == 3
    assert not any(store.exists(sha) for sha in _shas(db, a))
    db.dispose()


def test_migration_0002_keeps_existing_events(db_url: str, device: SampleDevice) -> None:
    engine = make_engine(db_url)
    upgrade(engine, "0001")
    ev = make_message(device, seed=3)[0].event
    cols, _ = event_values(ev, ev.to_json().decode(), NOW)
    with engine.begin() as conn:
        conn.execute(insert(EventRow), [cols])
    upgrade(engine)
    assert current_revision(engine) == "0002"
    engine.dispose()
    db = Database(db_url)
    with db.session() as s:
        row = s.get(EventRow, ev.event_id)
        assert row is not None and row.evidence_purged_at is None and row.event_json == cols["event_json"]
    db.dispose()
