"""FastAPI app behind `roadeye calibrate zones --serve`: one page, a canvas over the camera
snapshot, and a save endpoint that validates the polygons and rewrites only `zones` in the
camera YAML. Everything is served locally (no CDN) because roadside PCs are often offline.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from calibration.camfile import load_or_new, write_camera
from calibration.zones import ZoneError, zones_from_json
from edge.camera import CalibrationFileError

STATIC = Path(__file__).parent / "static"
_FILES = {"zones.js": "text/javascript", "zones.css": "text/css"}


def create_app(camera_path: Path, snapshot: npt.NDArray[np.uint8]) -> FastAPI:
    """App editing `camera_path` over `snapshot` (BGR, at the camera's full resolution)."""
    h, w = snapshot.shape[:2]
    size = (w, h)
    load_or_new(camera_path, size, None)  # fail now, not on first save, if sizes disagree
    ok, jpg = cv2.imencode(".jpg", snapshot, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise ValueError("cannot encode the snapshot as JPEG")
    jpeg = jpg.tobytes()
    lock = threading.Lock()
    app = FastAPI(title="roadeye zones", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/")
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in _FILES:
            return Response(status_code=404)
        return FileResponse(STATIC / name, media_type=_FILES[name])

    @app.get("/snapshot.jpg")
    def snap() -> Response:
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.get("/api/state")
    def state() -> dict[str, Any]:
        with lock:
            cal = load_or_new(camera_path, size, None)
        grid = []
        if cal.road_plane is not None:
            from calibration.zones import grid_for

            grid = [{"label": lbl, "points": np.round(line, 1).tolist()}
                    for lbl, line in grid_for(cal.road_plane, size)]
        return {"camera_id": cal.camera_id, "camera_file": str(camera_path), "image_size": list(size),
                "zones": cal.zones.model_dump(mode="json"), "road_grid": grid}

    @app.post("/api/zones")
    async def save(request: Request) -> JSONResponse:
        # Only same-origin script can send application/json without a CORS preflight (which is
        # never granted here), so another web page open in the operator's browser cannot post
        # zones to this local server (CSRF).
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return JSONResponse({"ok": False, "error": "Content-Type must be application/json"}, status_code=415)
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"ok": False, "error": "request body is not JSON"}, status_code=400)
        try:
            z = zones_from_json(body, size)
            with lock:  # reload so a concurrent `calibrate road/lens` edit is not overwritten
                cal = load_or_new(camera_path, size, None)
                cal.zones = z
                write_camera(cal, camera_path)
        except (ZoneError, CalibrationFileError) as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=422)
        return JSONResponse({"ok": True, "zones": z.model_dump(mode="json"), "camera_file": str(camera_path)})

    return app
