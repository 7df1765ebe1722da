"""MQTT 5 collector: receive -> validate -> store evidence -> store event -> acknowledge.

Design points:
- persistent session (clean_start=False + SessionExpiryInterval) under a stable client id,
  so messages published while the collector is down wait in the broker;
- shared subscription `$share/<group>/...` so N collectors split the stream;
- paho's manual acknowledgement: a PUBACK goes out only after `Ingestor.commit` returned,
  i.e. after the evidence files were flushed and the database transaction committed. A
  crash before that makes the broker redeliver, and `event_id` idempotency absorbs it;
- validation (JSON, schema, base64, SHA-256, Ed25519) and the evidence write run in a pool
  of `workers` processes as soon as a message arrives, so they use every core and overlap
  with the database; a committer thread then flushes the batch's evidence once
  (`EvidenceStore.sync`), group-commits up to `batch_max` rows in arrival order (one
  transaction per batch) and acknowledges them: evidence is durable before its row;
- acknowledgements carry the connection generation: a message id from a previous
  connection is never acknowledged on a new one (the broker redelivers those itself);
- storage errors (database down) -> no ack, retry the same batch with backoff;
- after each commit, one storage Receipt per (site, device) of the batch goes back to the
  edge (QoS 1), so an edge can forget an event only once a collector has stored it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import ssl
import threading
import time
from collections import Counter
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge.event import TOPIC_ROOT, Receipt, ReceiptItem, ReceiptStatus, receipt_topic, utc_now
from server.config import CollectorSettings, MqttSettings
from server.db.engine import Database
from server.evidence_store import EvidenceStore
from server.ingest import Ingestor, Outcome, Prepared, worker_init, worker_ping, worker_prepare

log = logging.getLogger(__name__)


RECEIPT_QUEUE_MAX = 1000
_RECEIPT_STATUS = {Outcome.STORED: ReceiptStatus.STORED, Outcome.DUPLICATE: ReceiptStatus.DUPLICATE,
                   Outcome.DEAD_LETTER: ReceiptStatus.DEAD_LETTER}


@dataclass
class _Msg:
    generation: int
    mid: int
    qos: int
    topic: str
    payload: bytes
    future: Future[Prepared] | None = None


def subscriptions(group: str) -> list[tuple[str, SubscribeOptions]]:
    qos1 = SubscribeOptions(qos=1)
    return [
        (f"$share/{group}/{TOPIC_ROOT}/+/+/events", qos1),
        (f"$share/{group}/{TOPIC_ROOT}/+/+/heartbeat", qos1),
        # status is retained; shared subscriptions get no retained messages, so not shared
        (f"{TOPIC_ROOT}/+/+/status", qos1),
    ]


class Collector:
    def __init__(self, db: Database, store: EvidenceStore, mqtt_settings: MqttSettings,
                 settings: CollectorSettings | None = None) -> None:
        self.db = db
        self.mqtt = mqtt_settings
        self.settings = settings or CollectorSettings()
        self.ingestor = Ingestor(db, store, max_bytes=self.settings.max_message_bytes)
        self.workers = self.settings.workers
        self._pool: ProcessPoolExecutor | None = None
        self.stats: Counter[str] = Counter()
        self._queue: queue.Queue[_Msg] = queue.Queue()
        self._generation = 0
        self._gen_lock = threading.Lock()
        self._stop = threading.Event()
        self.connected = threading.Event()
        self._worker: threading.Thread | None = None
        self._retiring = False
        self._last_message = time.monotonic()
        self._inflight = 0
        self._inflight_lock = threading.Lock()
        self._intake_n = 0
        self._intake_bytes = 0
        self._intake_cond = threading.Condition()
        self._drop_logged = -1e9
        # stage 1 -> stage 2; bounded so flushed-but-uncommitted batches cannot pile up
        self._commits: queue.Queue[tuple[list[_Msg], list[Prepared]]] = queue.Queue(maxsize=2)
        self._committer: threading.Thread | None = None
        self.client_id = mqtt_settings.resolved_client_id()
        self.client = self._make_client()

    # -- MQTT ------------------------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        m = self.mqtt
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                        protocol=mqtt.MQTTv5, manual_ack=True)
        # receipts are the only thing we publish: keep at most this many waiting for a
        # connection (paho's queue is unbounded by default); beyond it they are dropped
        c.max_queued_messages_set(RECEIPT_QUEUE_MAX)
        if m.username:
            c.username_pw_set(m.username, m.password)
        if m.tls_ca:
            c.tls_set(ca_certs=str(m.tls_ca), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        c.reconnect_delay_set(min_delay=1, max_delay=30)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        return c

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.mqtt.session_expiry_s
        props.ReceiveMaximum = self.mqtt.receive_maximum
        return props

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            log.error("broker refused connection: %s", reason)
            return
        with self._gen_lock:
            self._generation += 1
        log.info("connected to %s:%d (session present: %s)", self.mqtt.host, self.mqtt.port,
                 flags.session_present)
        if self._retiring:
            # take no new share of the stream; what the session already holds still arrives
            client.unsubscribe([t for t, _ in subscriptions(self.mqtt.group)])
        else:
            # Subscribing again on a resumed session is harmless and covers a changed group.
            client.subscribe(subscriptions(self.mqtt.group))
        self.connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        self.connected.clear()
        with self._gen_lock:
            self._generation += 1
        if not self._stop.is_set():
            log.warning("disconnected from broker (%s); paho reconnects", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._last_message = time.monotonic()
        if not self._admit(msg.qos, len(msg.payload)):
            return
        m = _Msg(self._generation, msg.mid, msg.qos, msg.topic, bytes(msg.payload))
        pool = self._pool
        if pool is not None:  # validation starts at once, in parallel, while earlier batches commit
            try:
                m.future = pool.submit(worker_prepare, m.topic, m.payload)
            except RuntimeError:  # pool broken or shutting down: validated inline later
                m.future = None
        self._queue.put(m)

    # -- bounded intake ----------------------------------------------------------------------
    def _admit(self, qos: int, size: int) -> bool:
        """Bounded intake: at most `intake_max_messages` / `intake_max_bytes` received and not
        yet stored are held in memory.

        QoS 0 messages beyond the bound are counted and dropped (edges publish QoS 1; a QoS 0
        flood is the broker writing as fast as the socket allows). A QoS 1 message beyond it
        makes paho's network thread wait here until a batch is done: reading stops, TCP pushes
        back and the broker keeps the messages (it holds them for our session anyway). That
        is needed because mosquitto 2.0.11 stops honouring our MQTT 5 Receive Maximum after the
        first PUBACKs (measured: receive maximum 10, 400 queued -> 10, then 110, then all 400
        in flight). The wait is capped at `intake_wait_s` per message so the network thread
        still sends keep-alives during a long storage outage (the intake then grows by at most
        one message per wait)."""
        s = self.settings
        with self._intake_cond:
            def full() -> bool:
                return self._intake_n >= s.intake_max_messages or self._intake_bytes + size > s.intake_max_bytes

            if self._intake_n and full():  # an empty intake always takes one (even a huge message)
                if qos == 0:
                    self.stats["dropped_qos0"] += 1
                    now = time.monotonic()
                    if now - self._drop_logged > 60:
                        self._drop_logged = now
                        log.warning("intake full (%d messages, %d bytes): dropping QoS 0 messages (%d so far); "
                                    "edges publish QoS 1", self._intake_n, self._intake_bytes,
                                    self.stats["dropped_qos0"])
                    return False
                self.stats["intake_waits"] += 1
                deadline = time.monotonic() + s.intake_wait_s
                while self._intake_n and full() and not self._stop.is_set():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        self.stats["intake_wait_timeouts"] += 1
                        break
                    self._intake_cond.wait(left)
            self._intake_n += 1
            self._intake_bytes += size
            if self._intake_n > self.stats["intake_high_water_messages"]:
                self.stats["intake_high_water_messages"] = self._intake_n
            if self._intake_bytes > self.stats["intake_high_water_bytes"]:
                self.stats["intake_high_water_bytes"] = self._intake_bytes
            return True

    def _release(self, batch: list[_Msg]) -> None:
        """A batch is done (stored and acknowledged, or abandoned): its memory is free."""
        with self._intake_cond:
            self._intake_n -= len(batch)
            self._intake_bytes -= sum(len(m.payload) for m in batch)
            self._intake_cond.notify_all()

    def intake(self) -> tuple[int, int]:
        """(messages, payload bytes) received and not yet done."""
        with self._intake_cond:
            return self._intake_n, self._intake_bytes

    # -- worker ----------------------------------------------------------------------------
    def _next_batch(self) -> list[_Msg]:
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.settings.batch_linger_s
        while len(batch) < self.settings.batch_max:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    batch.append(self._queue.get(timeout=left))
                except queue.Empty:
                    break
        return batch

    def _prepared(self, m: _Msg) -> Prepared:
        if m.future is not None:
            try:
                p = m.future.result()
                p.payload = m.payload
                return p
            except Exception as exc:  # worker lost its database or died: validate here instead
                log.warning("worker validation failed (%s); validating in the collector", exc)
                m.future = None
                if isinstance(exc, BrokenProcessPool):
                    self._restart_pool()
        return self.ingestor.prepare(m.topic, m.payload)

    def process(self, batch: list[_Msg]) -> list[Outcome]:
        """Validate and store a batch, retrying storage errors until stopped; then ack."""
        prepared = self._flush_stage(batch)
        if prepared is None:
            return []
        return self._commit_stage(batch, prepared) or []

    def _retrying(self, what: str, n: int, fn: Any) -> Any:
        """Run `fn` until it succeeds; storage errors are retried with backoff and nothing is
        acknowledged meanwhile. None once stopped."""
        delay = 0.5
        while True:
            try:
                return fn()
            except Exception as exc:  # storage or database down: do not ack, retry
                self.stats["storage_errors"] += 1
                log.error("%s for %d message(s) failed, retrying in %.1fs: %s", what, n, delay, exc)
                if self._stop.wait(delay):
                    return None
                delay = min(delay * 2, self.settings.retry_max_s)

    def _flush_stage(self, batch: list[_Msg]) -> list[Prepared] | None:
        """Stage 1: collect the validation results in arrival order, make the evidence durable."""
        def run() -> list[Prepared]:
            t0 = time.perf_counter()
            prepared = [self._prepared(m) for m in batch]
            self.ingestor.timings["wait_validation_s"] += time.perf_counter() - t0
            self.ingestor.flush_evidence(prepared)
            return prepared
        out: list[Prepared] | None = self._retrying("storing evidence", len(batch), run)
        return out

    def _commit_stage(self, batch: list[_Msg], prepared: list[Prepared]) -> list[Outcome] | None:
        """Stage 2: one transaction for the rows, then the acknowledgements and receipts."""
        outcomes: list[Outcome] | None = self._retrying(
            "storing rows", len(batch), lambda: self.ingestor.write_rows(prepared))
        if outcomes is None:
            return None
        for o in outcomes:
            self.stats[o.value] += 1
        for m, o in zip(batch, outcomes, strict=True):
            if o == Outcome.DEAD_LETTER:
                log.warning("dead-lettered a message on %s", m.topic)
        t0 = time.perf_counter()
        self._ack(batch)
        if self.settings.receipts:
            self._send_receipts(prepared, outcomes)
        self.ingestor.timings["ack_and_receipts_s"] += time.perf_counter() - t0
        self.stats["batches"] += 1
        return outcomes

    def _send_receipts(self, prepared: list[Prepared], outcomes: list[Outcome]) -> None:
        """One Receipt per (site, device) of a committed batch, QoS 1, not retained.

        Runs after the commit and the acks: a receipt that cannot be sent (broker gone, paho
        queue full) is counted and dropped, never retried here and never undoes anything; the
        edge republishes what got no receipt and idempotency answers with `duplicate`.
        """
        groups: dict[tuple[str, str], list[ReceiptItem]] = {}
        for p, o in zip(prepared, outcomes, strict=True):
            status = _RECEIPT_STATUS.get(o)
            if status is None or p.receipt is None:
                continue
            site, device, event_id = p.receipt
            groups.setdefault((site, device), []).append(ReceiptItem(event_id=event_id, status=status))
        now = utc_now()
        for (site, device), items in groups.items():
            try:
                payload = Receipt(collector_id=self.client_id, sent_at=now, items=items).to_bytes()
                info = self.client.publish(receipt_topic(site, device), payload, qos=1, retain=False)
            except Exception as exc:  # a receipt must never break the committer
                self.stats["receipt_errors"] += 1
                log.warning("receipt for %s/%s not sent: %s", site, device, exc)
                continue
            if info.rc == mqtt.MQTT_ERR_SUCCESS:
                self.stats["receipts_sent"] += 1
            elif info.rc == mqtt.MQTT_ERR_NO_CONN:
                self.stats["receipts_queued_offline"] += 1  # paho sends it after reconnecting
            else:
                self.stats["receipt_errors"] += 1
                log.warning("receipt for %s/%s not sent: %s", site, device, mqtt.error_string(info.rc))

    def _ack(self, batch: list[_Msg]) -> None:
        with self._gen_lock:
            gen = self._generation
        for m in batch:
            if m.qos == 0:
                continue
            if m.generation != gen:
                self.stats["ack_skipped_reconnect"] += 1
                continue
            self.client.ack(m.mid, m.qos)
        self.stats["acked"] += len(batch)

    def _work(self) -> None:
        """Stage-1 thread: batches -> validated and evidence durable -> stage 2. The two
        stages overlap: batch N's transaction commits while batch N+1's evidence is flushed."""
        while not self._stop.is_set():
            batch = self._next_batch()
            if not batch:
                continue
            with self._inflight_lock:
                self._inflight += 1
            handed = False
            try:
                prepared = self._flush_stage(batch)
                if prepared is not None:
                    while not self._stop.is_set():
                        try:
                            self._commits.put((batch, prepared), timeout=0.2)
                            handed = True
                            break
                        except queue.Full:
                            continue
            except Exception:  # never die on one bad batch: it stays unacked
                log.exception("unexpected error in the collector's evidence stage")
            finally:
                if not handed:
                    self._done_one(batch)

    def _commit_work(self) -> None:
        """Stage-2 thread; after a stop it still commits what stage 1 handed over."""
        while True:
            try:
                batch, prepared = self._commits.get(timeout=0.2)
            except queue.Empty:
                if self._stop.is_set() and (self._worker is None or not self._worker.is_alive()):
                    return
                continue
            try:
                self._commit_stage(batch, prepared)
            except Exception:  # never die on one bad batch: it stays unacked
                log.exception("unexpected error in the collector's commit stage")
            finally:
                self._done_one(batch)

    def _done_one(self, batch: list[_Msg]) -> None:
        self._release(batch)
        with self._inflight_lock:
            self._inflight -= 1

    def busy(self) -> bool:
        """A batch is being validated, flushed or committed."""
        with self._inflight_lock:
            return self._inflight > 0

    # -- lifecycle -------------------------------------------------------------------------
    def _restart_pool(self) -> None:
        old, self._pool = self._pool, None
        if old is not None:
            old.shutdown(wait=False, cancel_futures=True)
        self._start_pool()

    def _store_spec(self) -> str | None:
        reopen = getattr(self.ingestor.store, "reopen_spec", None)
        return reopen() if callable(reopen) else None

    def _start_pool(self) -> None:
        if self.workers > 0:
            # spawn, not fork: paho and SQLAlchemy threads must not be duplicated mid-flight
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=worker_init,
                initargs=(self.db.url, self.settings.max_message_bytes, self.ingestor.keys.ttl_s, os.getpid(),
                          self._store_spec()))
            # spawn every worker now (the pool starts them lazily, one per busy submit): a
            # worker's start-up (imports, database connection) costs ~1 s of CPU that would
            # otherwise land in the middle of the first burst of events
            for _ in range(self.workers):
                self._pool.submit(worker_ping)

    def start(self) -> Collector:
        self._stop.clear()
        self._start_pool()
        self._worker = threading.Thread(target=self._work, name="collector-worker", daemon=True)
        self._worker.start()
        self._committer = threading.Thread(target=self._commit_work, name="collector-commit", daemon=True)
        self._committer.start()
        self.client.connect_async(self.mqtt.host, self.mqtt.port, keepalive=self.mqtt.keepalive_s,
                                  clean_start=False, properties=self._connect_properties())
        self.client.loop_start()
        return self

    def retire(self, idle_s: float = 3.0, timeout_s: float = 3600.0) -> int:
        """Take this collector out of its group for good without losing anything.

        With shared subscriptions the broker keeps queueing a share of the stream for an
        offline member's persistent session. Retiring resumes the session, unsubscribes (no
        new share), stores and acknowledges everything the session held, and then ends the
        session (SessionExpiryInterval 0 at DISCONNECT). Returns the messages drained.
        """
        self._retiring = True
        self.start()
        if not self.connected.wait(30):
            self.stop()
            raise RuntimeError(f"cannot connect to {self.mqtt.host}:{self.mqtt.port} to retire the session")
        deadline = time.monotonic() + timeout_s
        self._last_message = time.monotonic()
        while time.monotonic() < deadline:
            idle = time.monotonic() - self._last_message >= idle_s
            if idle and self._queue.empty() and not self.busy():
                break
            time.sleep(0.1)
        else:
            self.stop()
            raise RuntimeError("the session did not drain in time; it was kept")
        self.stop(end_session=True)
        return int(self.stats["acked"])

    def stop(self, timeout: float = 10.0, end_session: bool = False) -> None:
        """Finish the batch in hand, then disconnect (the session stays with the broker
        unless `end_session`)."""
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout)
        if self._committer is not None:
            self._committer.join(timeout)
        if end_session:
            props = Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0
            self.client.disconnect(properties=props)
        else:
            self.client.disconnect()
        self.client.loop_stop()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def run_forever(self) -> None:
        self.start()
        try:
            while not self._stop.wait(60):
                log.info("collector stats: %s; committer wall time: %s", dict(self.stats),
                         {k: round(v, 1) for k, v in self.ingestor.timings.items()})
        finally:
            self.stop()

    def request_stop(self) -> None:
        self._stop.set()
