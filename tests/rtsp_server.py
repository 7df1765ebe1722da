"""RTSP server for tests: gst-rtsp-server serving an H.264 MP4 file in real time.

Runs under the SYSTEM Python (/usr/bin/python3 with python3-gi and
gir1.2-gst-rtsp-server-1.0), not the project venv, so it imports only stdlib + gi.
The file's H.264 stream is re-payloaded, not re-encoded, so serving costs almost no CPU.
"""

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("video")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mount", default="/stream")
    args = ap.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    # The H.264 stream is re-payloaded, not re-encoded; qtdemux paces it in real time.
    factory.set_launch(
        f'( filesrc location="{args.video}" ! qtdemux ! h264parse config-interval=-1 '
        "! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    factory.set_shared(True)
    server.get_mount_points().add_factory(args.mount, factory)
    if server.attach(None) == 0:
        print("failed to attach RTSP server", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    signal.signal(signal.SIGTERM, lambda *_: loop.quit())
    signal.signal(signal.SIGINT, lambda *_: loop.quit())
    print(f"serving rtsp://127.0.0.1:{args.port}{args.mount}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
