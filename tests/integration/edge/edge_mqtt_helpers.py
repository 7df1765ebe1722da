"""Shared helpers for the edge integration tests: a real MQTT subscriber that records what
arrives (persistent session, so messages queued while it was cut off still reach it)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


class Recorder:
    def __init__(self, host: str, port: int, topic: str = "roadeye/#", username: str | None = None,
                 password: str | None = None) -> None:
        self.events: list[str] = []  # event ids in arrival order (repeats kept)
        self.status: dict[str, Any] = {}
        self.heartbeats: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"rec-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_message = self._on_message
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.reconnect_delay_set(1, 1)
        if username is not None:
            self.client.username_pw_set(username, password)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect(host, port, clean_start=False, properties=props)
        self.client.loop_start()
        assert self.subscribed.wait(10), "recorder could not subscribe"

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        kind = msg.topic.rsplit("/", 1)[-1]
        with self._lock:
            if kind == "events":
                self.events.append(json.loads(msg.payload)["event"]["event_id"])
            elif kind == "status":
                self.status = json.loads(msg.payload) if msg.payload else {}
            elif kind == "heartbeat":
                self.heartbeats.append(json.loads(msg.payload))

    def wait_for(self, ids: set[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if ids <= set(self.events):
                    return True
            time.sleep(0.05)
        return False

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(self.events)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
