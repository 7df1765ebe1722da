"""MQTT 5 transport for the outbox: QoS 1, in order, delete only once safe.

With `require_receipt` (the default) a row leaves the outbox only when a collector's storage
receipt names its event (`edge.event.Receipt`); a PUBACK just parks it, and a parked row
without a receipt after `receipt_timeout_s` (doubling per resend) is published again. Without
receipts, the PUBACK deletes it.

Serialization lives in `edge.event`; this module only moves bytes. The drain thread keeps
at most `max_inflight` un-acknowledged messages with the broker, in outbox order. paho keeps
in-flight QoS 1 messages across reconnects and resends them (DUP) itself, so after an outage
the drain simply continues; after a crash the new process starts again from the oldest row
(the collector upserts on event_id, so a resend is harmless, a loss is not possible).

Also: a retained online/offline status on `roadeye/v1/<site>/<device>/status` with the
broker publishing "offline" as our last will, and a heartbeat with health figures.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.config import BrokerConfig
from edge.event import (
    Heartbeat,
    Receipt,
    ReceiptStatus,
    SchemaError,
    heartbeat_topic,
    receipt_topic,
    status_topic,
    utc_now,
)
from edge.metrics import EdgeMetrics
from edge.outbox import Outbox

log = logging.getLogger(__name__)


def status_payload(state: str, device_id: str) -> bytes:
    return json.dumps({"status": state, "device_id": device_id,
                       "at": utc_now().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"}).encode()


class MqttPublisher:
    def __init__(self, cfg: BrokerConfig, device_id: str, site_id: str, outbox: Outbox,
                 metrics: EdgeMetrics | None = None,
                 heartbeat: Callable[[], Heartbeat] | None = None,
                 resolve: Callable[[Any], Any] = lambda p: p) -> None:
        self.cfg, self.device_id, self.site_id = cfg, device_id, site_id
        self.outbox, self.metrics, self._heartbeat = outbox, metrics, heartbeat
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=cfg.client_id or f"roadeye-edge-{device_id}",
                                  protocol=mqtt.MQTTv5)
        if cfg.username is not None:
            self.client.username_pw_set(cfg.username, cfg.password)
        if cfg.tls:
            ca = resolve(cfg.ca_cert)
            self.client.tls_set(ca_certs=str(ca) if ca else None,
                                certfile=str(resolve(cfg.client_cert)) if cfg.client_cert else None,
                                keyfile=str(resolve(cfg.client_key)) if cfg.client_key else None,
                                cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self.status_topic = status_topic(site_id, device_id)
        self.receipt_topic = receipt_topic(site_id, device_id)
        self.client.will_set(self.status_topic, status_payload("offline", device_id), qos=1, retain=True)
        self.client.max_inflight_messages_set(cfg.max_inflight)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.message_callback_add(self.receipt_topic, self._on_receipt)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        # a receipt's outbox delete and its counters change together: wait_drained must not see an empty
        # outbox before `receipted` counts the rows it lost
        self._receipt_lock = threading.Lock()
        self._inflight: dict[int, int] = {}  # mid -> outbox seq
        # mid -> (reason code, when): PUBACKs that raced ahead of our bookkeeping, or acks of
        # status / heartbeat messages; pruned after a minute (mids only wrap after 65535)
        self._early_acks: dict[int, tuple[int, float]] = {}
        self._last_sent = 0
        self._retry_at: float | None = None
        self.connected = threading.Event()
        self.published = 0
        self.failures = 0
        self.receipted = 0
        self.resent = 0
        self.bad_receipts = 0
        self._next_overdue_check = 0.0
        self._threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        self.client.loop_start()
        for target, name in ((self._drain_loop, "outbox-drain"), (self._heartbeat_loop, "heartbeat")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 5.0) -> None:
        """Graceful: say offline (retained), disconnect. Undelivered rows stay in the outbox."""
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout)
        if self.connected.is_set():
            info = self.client.publish(self.status_topic, status_payload("offline", self.device_id),
                                       qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()

    def notify(self) -> None:
        """A new row is in the outbox."""
        self._wake.set()

    def wait_drained(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._receipt_lock:
                if self.outbox.depth()[0] == 0:
                    return True
            self._wake.set()
            time.sleep(0.05)
        with self._receipt_lock:
            return self.outbox.depth()[0] == 0

    # -- paho callbacks (network thread) ------------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                    properties: Any) -> None:
        if reason_code.is_failure:
            log.error("broker %s:%d refused the connection: %s", self.cfg.host, self.cfg.port, reason_code)
            return
        log.info("connected to broker %s:%d", self.cfg.host, self.cfg.port)
        if self.cfg.require_receipt:
            client.subscribe(self.receipt_topic, qos=1)
        client.publish(self.status_topic, status_payload("online", self.device_id), qos=1, retain=True)
        self.connected.set()
        if self.metrics:
            self.metrics.broker_connected.set(1)
        self._wake.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        if self.connected.is_set():
            log.warning("disconnected from broker: %s (outbox keeps every event)", reason_code)
        self.connected.clear()
        if self.metrics:
            self.metrics.broker_connected.set(0)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason_code: Any,
                    properties: Any) -> None:
        with self._lock:
            seq = self._inflight.pop(mid, None)
            if seq is None:
                now = time.monotonic()
                self._early_acks[mid] = (int(getattr(reason_code, "value", 0)), now)
                if len(self._early_acks) > 64:
                    self._early_acks = {m: v for m, v in self._early_acks.items() if now - v[1] < 60}
                return
        self._settle(seq, int(getattr(reason_code, "value", 0)))

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any,
                      properties: Any) -> None:
        for rc in reason_codes:
            if rc.is_failure:
                log.error("broker refused our subscription to %s (%s): no storage receipt can arrive, so "
                          "every event will be resent until the ACL lets this device read it",
                          self.receipt_topic, rc)

    def _on_receipt(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            receipt = Receipt.from_bytes(msg.payload)
        except SchemaError as exc:
            self.bad_receipts += 1
            log.error("ignoring a malformed storage receipt on %s: %s", msg.topic, exc)
            return
        with self._receipt_lock:
            try:
                n = self.outbox.forget([item.event_id for item in receipt.items])
            except Exception as exc:  # disk trouble: the rows stay and are resent later; harmless
                log.error("could not forget receipted events (%s); they will be resent", exc)
                return
            self.receipted += n
        for item in receipt.items:
            if item.status == ReceiptStatus.DEAD_LETTER:
                log.error("collector %s refused event %s (dead letter); see the server's dead-letter table",
                          receipt.collector_id, item.event_id)
        if self.metrics:
            self.metrics.receipted.inc(n)
        self._update_depth()

    def _settle(self, seq: int, code: int) -> None:
        if code >= 0x80 or code == 0x10:
            # the broker refused it (e.g. quota, not authorised), or accepted it with "no matching
            # subscribers" (0x10: e.g. mosquitto 2.0 does not restore the collectors' shared
            # subscriptions after a restart until they re-subscribe) and dropped it: keep, retry later
            self.failures += 1
            log.error("broker rejected outbox row %d with reason code 0x%02x; will retry", seq, code)
            self.outbox.mark_attempt(seq)
            with self._lock:
                self._last_sent = min(self._last_sent, seq - 1)
                self._retry_at = time.monotonic() + 10.0
        else:
            try:
                if self.cfg.require_receipt:
                    self.outbox.mark_delivered(seq)
                else:
                    self.outbox.ack(seq)
            except Exception as exc:  # disk full / I/O error: must not kill paho's network thread
                # delivered (PUBACK) but not deleted: retry the delete later, never resend it now
                log.error("could not delete acknowledged outbox row %d (%s); retrying in 2s", seq, exc)
                retry = threading.Timer(2.0, self._settle, (seq, code))
                retry.daemon = True
                retry.start()
                return
            self.published += 1
            if self.metrics:
                self.metrics.published.inc()
        self._update_depth()
        self._wake.set()

    def _update_depth(self) -> None:
        if self.metrics:
            n, size = self.outbox.depth()
            self.metrics.outbox_depth.set(n)
            self.metrics.outbox_bytes.set(size)
            self.metrics.outbox_alarm.set(1 if self.outbox.alarm else 0)

    # -- drain ---------------------------------------------------------------------------
    def _drain_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            if not self.connected.is_set():
                continue
            if self._retry_at is not None:
                if time.monotonic() < self._retry_at:
                    continue
                self._retry_at = None
            try:
                self._resend_overdue()
                self._fill_window()
            except Exception:  # never let the drain thread die
                log.exception("outbox drain failed; retrying")
                time.sleep(1.0)

    def _resend_overdue(self) -> None:
        """Parked rows whose receipt is overdue go back to pending; rewind the window to them."""
        if not self.cfg.require_receipt or time.monotonic() < self._next_overdue_check:
            return
        self._next_overdue_check = time.monotonic() + min(2.0, self.cfg.receipt_timeout_s / 4)
        seqs = self.outbox.overdue(self.cfg.receipt_timeout_s)
        if not seqs:
            return
        log.warning("%d event(s) got no storage receipt within %.0f s (first outbox row %d); resending",
                    len(seqs), self.cfg.receipt_timeout_s, seqs[0])
        self.resent += len(seqs)
        if self.metrics:
            self.metrics.resent.inc(len(seqs))
        with self._lock:
            self._last_sent = min(self._last_sent, seqs[0] - 1)

    def _fill_window(self) -> None:
        with self._lock:
            room = self.cfg.max_inflight - len(self._inflight)
            after = self._last_sent
            held = set(self._inflight.values())
        if room <= 0:
            return
        for item in self.outbox.pending(limit=room, after_seq=after):
            if item.seq in held:
                continue
            if not self.connected.is_set():
                return
            props = Properties(PacketTypes.PUBLISH)
            props.ContentType = "application/json"
            props.UserProperty = [("event_id", item.event_id)]
            info = self.client.publish(item.topic, item.payload, qos=1, properties=props)
            if info.rc != mqtt.MQTT_ERR_SUCCESS and info.rc != mqtt.MQTT_ERR_NO_CONN:
                log.warning("publish of row %d failed (rc=%s); will retry", item.seq, info.rc)
                return
            with self._lock:
                if self._retry_at is None:  # a refusal meanwhile rewound the window: do not skip past it
                    self._last_sent = max(self._last_sent, item.seq)
                early = self._early_acks.pop(info.mid, None)
                if early is None:
                    self._inflight[info.mid] = item.seq
            if early is not None:
                self._settle(item.seq, early[0])
        self._update_depth()

    # -- heartbeat -------------------------------------------------------------------------
    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self.cfg.heartbeat_s):
            self.send_heartbeat()

    def send_heartbeat(self) -> None:
        if self._heartbeat is None or not self.connected.is_set():
            return
        try:
            hb = self._heartbeat()
        except Exception:
            log.exception("building the heartbeat failed")
            return
        payload = json.dumps(hb.model_dump(mode="json"), separators=(",", ":")).encode()
        self.client.publish(heartbeat_topic(self.site_id, self.device_id), payload, qos=0)
