"""Prometheus metrics of one edge process (own registry, so tests can build many pipelines)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class EdgeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.frames_in = Counter("roadeye_frames_in", "Frames received from the camera.", ["camera"], registry=r)
        self.frames_analysed = Counter("roadeye_frames_analysed", "Frames run through the cascade.",
                                       ["camera"], registry=r)
        self.frames_dropped = Counter("roadeye_frames_dropped",
                                      "Frames due for analysis replaced by a newer one before the "
                                      "pipeline took them.", ["camera"], registry=r)
        self.fps_analysed = Gauge("roadeye_fps_analysed", "Analysed frames per second (last interval).",
                                  ["camera"], registry=r)
        self.fps_in = Gauge("roadeye_fps_in", "Received frames per second (last interval).", ["camera"],
                            registry=r)
        self.reconnects = Gauge("roadeye_source_reconnects", "Stream reconnects since start.", ["camera"],
                                registry=r)
        self.connected = Gauge("roadeye_source_connected", "1 when the stream is up.", ["camera"], registry=r)
        self.stage_seconds = Histogram("roadeye_stage_seconds", "Latency per pipeline stage.", ["stage"],
                                       buckets=STAGE_BUCKETS, registry=r)
        self.events = Counter("roadeye_events", "Violation events emitted.", ["camera", "violation"],
                              registry=r)
        self.outbox_depth = Gauge("roadeye_outbox_depth", "Events not yet safe at the collector (or broker).",
                                  registry=r)
        self.outbox_bytes = Gauge("roadeye_outbox_bytes", "Payload bytes of those events.", registry=r)
        self.outbox_alarm = Gauge("roadeye_outbox_alarm", "1 when the outbox is over its bound.", registry=r)
        self.published = Counter("roadeye_published", "Events acknowledged by the broker.", registry=r)
        self.receipted = Counter("roadeye_receipted", "Events a collector confirmed as stored.", registry=r)
        self.resent = Counter("roadeye_resent", "Events published again: no storage receipt in time.",
                              registry=r)
        self.broker_connected = Gauge("roadeye_broker_connected", "1 when connected to the broker.",
                                      registry=r)

    def observe_stage(self, stage: str, seconds: float) -> None:
        self.stage_seconds.labels(stage).observe(seconds)

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        start_http_server(port, addr=addr, registry=self.registry)
