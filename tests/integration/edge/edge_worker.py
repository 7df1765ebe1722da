"""A real edge process for crash tests: pipeline (colour-keyed doubles) -> outbox -> MQTT.

Prints `READY <json list of event ids>` once every event is committed to the outbox, then
idles until killed. Run as: python -m tests.integration.edge.edge_worker OUTBOX HOST PORT
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from edge.config import BrokerConfig
from edge.outbox import Outbox
from edge.publish import MqttPublisher
from edge.runner import FanOut, OutboxSink
from tests.unit.edge.test_edge_pipeline import BELTLESS, PHONER, make, scene_frames


def main() -> None:
    outbox_path, host, port = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    ob = Outbox(outbox_path)
    pub = MqttPublisher(BrokerConfig(host=host, port=port, keepalive_s=5, require_receipt=False),
                        "box-01", "site-1", ob)
    pub.start()
    p, out, _ = make()
    p.sink = FanOut(out.append, OutboxSink(ob, "site-1", pub.notify))
    for f in scene_frames([BELTLESS, PHONER], 10):
        p.process([f])
    p.flush()
    print("READY " + json.dumps([m.event.event_id for m in out]), flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
