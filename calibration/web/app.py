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
from edge.camera import CalibrationFileError, RoadPlane

STATIC = Path(__file__).parent / "static"
_FILES = {"zones.js": "text/javascript", "zones.css": "text/css"}


def create_app(camera_path: Path, snapshot: npt.NDArray[np.uint8], max_rms_m: float = 0.25) -> FastAPI:
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

    def grid_of(cal: Any) -> list[dict[str, Any]]:
        if cal.road_plane is None:
            return []
        from calibration.zones import grid_for

        return [{"label": lbl, "points": np.round(line, 1).tolist()} for lbl, line in grid_for(cal.road_plane, size)]

    async def json_body(request: Request) -> Any:
        # Only same-origin script can send application/json without a CORS preflight (which is
        # never granted here), so another web page open in the operator's browser cannot post
        # to this local server (CSRF).
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise _BadRequest(415, "Content-Type must be application/json")
        try:
            return await request.json()
        except ValueError:
            raise _BadRequest(400, "request body is not JSON") from None

    @app.get("/api/state")
    def state() -> dict[str, Any]:
        with lock:
            cal = load_or_new(camera_path, size, None)
        rp = cal.road_plane
        return {"camera_id": cal.camera_id, "camera_file": str(camera_path), "image_size": list(size),
                "zones": cal.zones.model_dump(mode="json"), "road_grid": grid_of(cal),
                "road_points": [] if rp is None else [{"image": p, "road": q}
                                                      for p, q in zip(rp.image_points, rp.road_points_m, strict=True)]}

    @app.post("/api/zones")
    async def save(request: Request) -> JSONResponse:
        try:
            z = zones_from_json(await json_body(request), size)
            with lock:  # reload so a concurrent `calibrate road/lens` edit is not overwritten
                cal = load_or_new(camera_path, size, None)
                cal.zones = z
                write_camera(cal, camera_path)
        except _BadRequest as exc:
            return JSONResponse({"ok": False, "error": exc.msg}, status_code=exc.status)
        except (ZoneError, CalibrationFileError) as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=422)
        return JSONResponse({"ok": True, "zones": z.model_dump(mode="json"), "camera_file": str(camera_path)})

    @app.post("/api/road")
    async def road(request: Request) -> JSONResponse:
        """Fit the road plane from clicked points with typed road coordinates (same checks as
        `roadeye calibrate road`); per-point errors come back so a bad click can be seen."""
        from calibration import homography as hg

        try:
            body = await json_body(request)
            pts = body.get("points") if isinstance(body, dict) else None
            if not isinstance(pts, list) or not all(
                isinstance(p, dict) and _pair(p.get("image")) and _pair(p.get("road")) for p in pts
            ):
                raise _BadRequest(422, "expected {points: [{image: [u, v], road: [X, Y]}, ...]}")
            img = [[float(c) for c in p["image"]] for p in pts]
            rd = [[float(c) for c in p["road"]] for p in pts]
            outside = [i + 1 for i, (u, v) in enumerate(img) if not (0 <= u <= size[0] and 0 <= v <= size[1])]
            if outside:
                raise _BadRequest(422, f"road point(s) {outside} lie outside the image")
            ransac = bool(body.get("ransac", len(pts) >= 6))
            fit = hg.fit_homography(img, rd, ransac=ransac)
        except _BadRequest as exc:
            return JSONResponse({"ok": False, "error": exc.msg}, status_code=exc.status)
        except hg.HomographyError as exc:
            return JSONResponse({"ok": False, "error": f"road plane: {exc}"}, status_code=422)
        result = {"rms_m": fit.rms_m, "residuals_m": fit.residuals_m.tolist(), "inliers": fit.inliers.tolist()}
        if fit.rms_m > max_rms_m:
            return JSONResponse({"ok": False, **result, "error": (
                f"road plane not saved: RMS {fit.rms_m:.3f} m > {max_rms_m} m; check the point with the "
                f"largest error (#{int(np.argmax(fit.residuals_m)) + 1}) and its metres")}, status_code=422)
        inl = fit.inliers
        try:
            with lock:
                cal = load_or_new(camera_path, size, None)
                cal.road_plane = RoadPlane(image_points=[p for p, k in zip(img, inl, strict=True) if k],
                                           road_points_m=[q for q, k in zip(rd, inl, strict=True) if k],
                                           homography=fit.homography.tolist(), rms_m=round(fit.rms_m, 5))
                write_camera(cal, camera_path)
        except CalibrationFileError as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=422)
        return JSONResponse({"ok": True, **result, "road_grid": grid_of(cal), "camera_file": str(camera_path)})

    return app


class _BadRequest(Exception):
    def __init__(self, status: int, msg: str):
        super().__init__(msg)
        self.status, self.msg = status, msg


def _pair(v: Any) -> bool:
    return isinstance(v, list | tuple) and len(v) == 2 and all(
        isinstance(c, int | float) and not isinstance(c, bool) and np.isfinite(c) for c in v)
