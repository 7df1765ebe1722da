"""`roadeye server ...`: run the collector and the review web app, manage users and devices."""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from edge.event import describe_validation_error
from server.config import MqttSettings, ServerConfig, WebSettings

log = logging.getLogger("server")


def _storage_options(f: Callable[..., Any]) -> Callable[..., Any]:
    @click.option("--data-dir", type=click.Path(path_type=Path), default=Path("var/server"), show_default=True,
                  help="Directory for the SQLite file, session key and evidence.")
    @click.option("--db", "db_url", default=None,
                  help="SQLAlchemy URL [default: sqlite:///<data-dir>/roadeye.db]; "
                       "e.g. postgresql+psycopg://user:pw@host/roadeye.")
    @click.option("--evidence-dir", default=None,
                  help="Evidence store: directory or s3://bucket/prefix [default: <data-dir>/evidence].")
    @functools.wraps(f)
    def wrapper(*args: Any, data_dir: Path, db_url: str | None, evidence_dir: str | None, **kw: Any) -> Any:
        cfg = ServerConfig(data_dir=data_dir, db_url=db_url, evidence=evidence_dir)
        return f(*args, cfg=cfg, **kw)

    return wrapper


def _mqtt_options(f: Callable[..., Any]) -> Callable[..., Any]:
    @click.option("--mqtt-host", default="127.0.0.1", show_default=True)
    @click.option("--mqtt-port", default=1883, show_default=True, type=int)
    @click.option("--mqtt-username", default=None)
    @click.option("--mqtt-password", default=None, envvar="ROADEYE_MQTT_PASSWORD",
                  help="Also read from $ROADEYE_MQTT_PASSWORD.")
    @click.option("--mqtt-tls-ca", type=click.Path(exists=True, path_type=Path), default=None,
                  help="CA certificate; enables TLS.")
    @click.option("--group", default="collectors", show_default=True, help="Shared-subscription group.")
    @click.option("--client-id", default=None, help="Stable MQTT client id (persistent session key).")
    @click.option("--workers", type=click.IntRange(0, 64), default=None,
                  help="Validation processes [default: one per core, at most 4; 0 = in-process].")
    @click.option("--register-device-key", "device_keys", multiple=True, metavar="DEVICE_ID=PEM_PATH",
                  help="Register (or re-key) a device before starting; repeatable.")
    @click.option("--receipts/--no-receipts", default=True, show_default=True,
                  help="Publish storage receipts to roadeye/v1/<site>/<device>/receipts after each commit.")
    @functools.wraps(f)
    def wrapper(*args: Any, mqtt_host: str, mqtt_port: int, mqtt_username: str | None,
                mqtt_password: str | None, mqtt_tls_ca: Path | None, group: str, client_id: str | None,
                workers: int | None, receipts: bool, cfg: ServerConfig, **kw: Any) -> Any:
        n = min(4, os.cpu_count() or 1) if workers is None else workers
        cfg = cfg.model_copy(update={"collector": cfg.collector.model_copy(
            update={"workers": n, "receipts": receipts})})
        try:
            m = MqttSettings(host=mqtt_host, port=mqtt_port, username=mqtt_username, password=mqtt_password,
                             tls_ca=mqtt_tls_ca, group=group, client_id=client_id)
        except ValidationError as exc:
            raise click.UsageError(f"bad MQTT option: {describe_validation_error(exc)}") from exc
        return f(*args, mqtt=m, cfg=cfg, **kw)

    return wrapper


def _web_options(f: Callable[..., Any]) -> Callable[..., Any]:
    @click.option("--http-host", default="127.0.0.1", show_default=True)
    @click.option("--http-port", default=8080, show_default=True, type=int)
    @click.option("--second-stage-review/--no-second-stage-review", default=False, show_default=True,
                  help="Require a second, different reviewer before a decision is final.")
    @click.option("--cookie-secure/--no-cookie-secure", default=False, show_default=True,
                  help="Mark cookies Secure (behind HTTPS).")
    @click.option("--admin", "admins", multiple=True, metavar="USER:PASSWORD",
                  help="Create this admin if missing (demos/tests); repeatable.")
    @functools.wraps(f)
    def wrapper(*args: Any, http_host: str, http_port: int, second_stage_review: bool, cookie_secure: bool,
                **kw: Any) -> Any:
        try:
            w = WebSettings(host=http_host, port=http_port, second_stage_review=second_stage_review,
                            cookie_secure=cookie_secure)
        except ValidationError as exc:
            raise click.UsageError(f"bad HTTP option: {describe_validation_error(exc)}") from exc
        return f(*args, web=w, **kw)

    return wrapper


def _open(cfg: ServerConfig, migrate: bool = True) -> tuple[Any, Any]:
    from server.db.engine import Database
    from server.evidence_store import open_store

    try:
        db = Database(cfg.database_url(), migrate=migrate)
    except Exception as exc:
        raise click.ClickException(f"cannot open database {cfg.database_url()!r}: {exc}") from exc
    return db, open_store(cfg.evidence_spec())


def _apply_device_keys(db: Any, device_keys: tuple[str, ...]) -> None:
    from server.services import ServiceError, register_device

    for spec in device_keys:
        dev_id, sep, path = spec.partition("=")
        if not sep or not dev_id or not path:
            raise click.BadParameter(f"expected DEVICE_ID=PEM_PATH, got {spec!r}", param_hint="--register-device-key")
        try:
            pem = Path(path).read_text()
        except OSError as exc:
            raise click.BadParameter(f"cannot read {path}: {exc}", param_hint="--register-device-key") from exc
        try:
            with db.session() as s:
                from server.db.models import Device

                known = s.get(Device, dev_id)
                if known is not None and known.public_key_pem.strip() == pem.strip():
                    continue  # same key: leave it as it is (an admin may have deactivated it)
                register_device(s, dev_id, pem, None, who="cli")
        except ServiceError as exc:
            raise click.BadParameter(f"{dev_id}: {exc}", param_hint="--register-device-key") from exc


def _apply_admins(db: Any, admins: tuple[str, ...]) -> None:
    from sqlalchemy import select

    from server.auth import AuthError, create_user
    from server.db.models import User

    for spec in admins:
        user, sep, pw = spec.partition(":")
        if not sep:
            raise click.BadParameter(f"expected USER:PASSWORD, got {user!r}:***", param_hint="--admin")
        with db.session() as s:
            if s.scalar(select(User).where(User.username == user)) is None:
                try:
                    create_user(s, user, pw, "admin", actor="cli")
                except AuthError as exc:
                    raise click.BadParameter(str(exc), param_hint="--admin") from exc


def _on_signals(stop: Callable[[], None]) -> None:
    def handler(signum: int, frame: Any) -> None:
        log.info("signal %d: shutting down", signum)
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


@click.group()
def server() -> None:
    """Central collector (MQTT -> storage) and the review web app."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(min(logging.getLogger().level, logging.INFO))


@server.command()
@_storage_options
@_mqtt_options
@click.option("--retire", is_flag=True,
              help="Drain this collector's persistent session (same --client-id), then end it, so the "
                   "broker stops queueing a share of the stream for it. Use when removing a collector.")
def collect(cfg: ServerConfig, mqtt: MqttSettings, device_keys: tuple[str, ...], retire: bool) -> None:
    """Run only the MQTT collector."""
    from server.collector import Collector

    db, store = _open(cfg)
    _apply_device_keys(db, device_keys)
    col = Collector(db, store, mqtt, cfg.collector)
    if retire:
        try:
            n = col.retire()
        except RuntimeError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"session {mqtt.resolved_client_id()} drained ({n} messages stored) and ended")
        return
    _on_signals(col.request_stop)
    click.echo(f"collector: {mqtt.host}:{mqtt.port} group={mqtt.group} client_id={mqtt.resolved_client_id()} "
               f"db={db.engine.url.render_as_string(hide_password=True)} evidence={store.describe()}", err=True)
    col.run_forever()


def _serve(app: Any, web: WebSettings) -> Any:
    import uvicorn

    config = uvicorn.Config(app, host=web.host, port=web.port, log_level="info", access_log=False,
                            proxy_headers=False)
    return uvicorn.Server(config)


@server.command()
@_storage_options
@_web_options
def web(cfg: ServerConfig, web: WebSettings, admins: tuple[str, ...]) -> None:
    """Run only the HTTP API and review web app."""
    from server.api.app import create_app

    cfg = cfg.model_copy(update={"web": web})
    db, store = _open(cfg)
    _apply_admins(db, admins)
    srv = _serve(create_app(cfg, db, store), web)
    click.echo(f"web: http://{web.host}:{web.port}/", err=True)
    srv.run()


@server.command()
@_storage_options
@_mqtt_options
@_web_options
def run(cfg: ServerConfig, mqtt: MqttSettings, web: WebSettings, device_keys: tuple[str, ...],
        admins: tuple[str, ...]) -> None:
    """Collector and web app in one process (SQLite by default)."""
    from server.api.app import create_app
    from server.collector import Collector

    cfg = cfg.model_copy(update={"web": web, "mqtt": mqtt})
    db, store = _open(cfg)
    _apply_device_keys(db, device_keys)
    _apply_admins(db, admins)
    col = Collector(db, store, mqtt, cfg.collector).start()
    app = create_app(cfg, db, store, collector=col)
    srv = _serve(app, web)
    click.echo(f"roadeye server: http://{web.host}:{web.port}/  mqtt {mqtt.host}:{mqtt.port} "
               f"db={db.engine.url.render_as_string(hide_password=True)} evidence={store.describe()}", err=True)
    try:
        srv.run()  # uvicorn handles SIGINT/SIGTERM and returns
    finally:
        col.stop()


@server.command()
@click.argument("username")
@click.option("--role", type=click.Choice(["viewer", "reviewer", "admin"]), default="reviewer", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@_storage_options
def adduser(cfg: ServerConfig, username: str, role: str, password_stdin: bool) -> None:
    """Create a user (prompts for the password unless --password-stdin)."""
    from server.auth import AuthError, create_user

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    db, _ = _open(cfg)
    try:
        with db.session() as s:
            create_user(s, username, password, role, actor="cli")
    except AuthError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"created {role} {username!r}")


@server.command("register-device")
@click.argument("device_id")
@click.option("--public-key", "public_key", required=True, type=click.Path(exists=True, path_type=Path),
              help="Ed25519 public key PEM (from `roadeye edge keygen`).")
@click.option("--site", "site_id", default=None, help="Site the device is installed at (events from "
              "other sites are refused).")
@click.option("--description", default=None)
@_storage_options
def register_device_cmd(cfg: ServerConfig, device_id: str, public_key: Path, site_id: str | None,
                        description: str | None) -> None:
    """Register an edge device's public key (re-running rotates the key)."""
    from server.services import ServiceError, device_summary, register_device

    db, _ = _open(cfg)
    try:
        with db.session() as s:
            dev = register_device(s, device_id, public_key.read_text(), site_id, who="cli",
                                  description=description)
            summary = device_summary(dev)
    except ServiceError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(summary))


@server.command("export-reviews")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="CSV file to write ('-' = stdout).")
@_storage_options
def export_reviews(cfg: ServerConfig, out: Path) -> None:
    """Reviewed events as CSV for threshold calibration (CONTRACTS columns)."""
    from server.services import reviews_csv

    db, _ = _open(cfg)
    with db.session() as s:
        text = reviews_csv(s)
    if str(out) == "-":
        click.echo(text, nl=False)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        click.echo(f"wrote {text.count(chr(10)) - 1} reviews to {out}", err=True)


@server.command()
@_storage_options
def verify(cfg: ServerConfig) -> None:
    """Re-hash the evidence store and re-check every signature; exit 1 on tampering."""
    from server.services import verify_all

    db, store = _open(cfg)
    with db.session() as s:
        rep = verify_all(s, store)
    click.echo(json.dumps(rep.as_dict(), indent=2, ensure_ascii=False))
    if not rep.ok:
        sys.exit(1)


@server.command()
@_storage_options
@click.option("--rejected-days", type=click.IntRange(min=0), default=None,
              help="Delete the evidence images of events rejected more than N days ago.")
@click.option("--confirmed-days", type=click.IntRange(min=0), default=None,
              help="Delete the evidence images of events confirmed more than M days ago.")
@click.option("--dry-run", is_flag=True, help="Report what would be deleted; change nothing.")
def retention(cfg: ServerConfig, rejected_days: int | None, confirmed_days: int | None, dry_run: bool) -> None:
    """Evidence retention: delete old reviewed events' images (blobs no other event uses),
    keep the signed event, its reviews and the audit trail; prints a JSON report."""
    from server.retention import RetentionPolicy, purge_evidence

    if rejected_days is None and confirmed_days is None:
        raise click.UsageError("give --rejected-days N and/or --confirmed-days M")
    db, store = _open(cfg)
    rep = purge_evidence(db, store, RetentionPolicy(rejected_days, confirmed_days), dry_run=dry_run)
    click.echo(json.dumps(rep.as_dict(), indent=2, ensure_ascii=False))


@server.group()
def db() -> None:
    """Database schema management."""


@db.command()
@_storage_options
def upgrade(cfg: ServerConfig) -> None:
    """Apply migrations up to the latest schema (also done by run/collect/web)."""
    from server.db.engine import current_revision

    database, _ = _open(cfg, migrate=True)
    click.echo(f"schema at revision {current_revision(database.engine)} "
               f"({database.engine.url.render_as_string(hide_password=True)})")


