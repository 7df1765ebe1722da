"""`roadeye calibrate ...`: every step reads and rewrites one camera YAML, touching only the
section it owns (lens, zones, road_plane, thresholds)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import click
import numpy as np

from edge.camera import CalibrationFileError, Lens, RoadPlane, Zones, load_camera


def _fail(msg: str) -> None:
    raise click.ClickException(msg)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def calibrate() -> None:
    """Per-camera calibration: lens, zones, road plane, fitness report, thresholds.

    All commands write one camera YAML (`<camera>.camera.yaml`) that the edge config includes.
    """


# --------------------------------------------------------------------------------------- lens
_PATTERN = [
    click.option("--pattern", type=click.Choice(["checkerboard", "charuco"]), required=True),
    click.option("--cols", type=int, required=True, help="Squares across the board (not inner corners)."),
    click.option("--rows", type=int, required=True, help="Squares down the board."),
    click.option("--square-mm", type=float, required=True, help="Printed square size in mm."),
    click.option("--marker-mm", type=float, default=None, help="ChArUco marker size (default 0.7 x square)."),
    click.option("--dictionary", default="DICT_5X5_100", show_default=True, help="ChArUco ArUco dictionary."),
    click.option("--legacy-charuco", is_flag=True, help="Board printed by OpenCV < 4.6 (even row count)."),
]


def _pattern_opts(f):  # type: ignore[no-untyped-def]
    for opt in reversed(_PATTERN):
        f = opt(f)
    return f


def _spec(pattern: str, cols: int, rows: int, square_mm: float, marker_mm: float | None, dictionary: str,
          legacy_charuco: bool):  # type: ignore[no-untyped-def]
    from calibration.lens import BoardSpec, LensCalibrationError

    try:
        return BoardSpec(pattern, cols, rows, square_mm, marker_mm, dictionary, legacy_charuco)  # type: ignore[arg-type]
    except LensCalibrationError as exc:
        raise click.ClickException(str(exc)) from None


@calibrate.command()
@click.argument("images", nargs=-1, required=True, type=click.Path())
@_pattern_opts
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="Camera YAML to write the lens into (created if missing, other sections kept).")
@click.option("--camera-id", default=None, help="Camera id when creating the file (default: file name).")
@click.option("--no-k3", is_flag=True, help="Fix k3 = 0 (fewer views / narrow lenses).")
@click.option("--robust", is_flag=True,
              help="Also try OpenCV's sector-based checkerboard detector (blurred / low-contrast views; slower).")
@click.option("--video-step", type=int, default=15, show_default=True, help="Use every Nth frame of videos.")
@click.option("--max-rms", type=float, default=1.0, show_default=True,
              help="Refuse to write a calibration whose reprojection RMS (px) is above this.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Also write a JSON report.")
def lens(images: tuple[str, ...], pattern: str, cols: int, rows: int, square_mm: float, marker_mm: float | None,
         dictionary: str, legacy_charuco: bool, out: str, camera_id: str | None, no_k3: bool, robust: bool,
         video_step: int,
         max_rms: float, json_out: str | None) -> None:
    """Intrinsics + distortion from IMAGES (files, directories or videos) of a board."""
    from calibration.camfile import load_or_new, write_camera
    from calibration.lens import LensCalibrationError, calibrate_lens, iter_frames

    spec = _spec(pattern, cols, rows, square_mm, marker_mm, dictionary, legacy_charuco)
    try:
        res = calibrate_lens(iter_frames(images, video_step), spec, fit_k3=not no_k3, robust=robust)
    except LensCalibrationError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(res.summary())
    if json_out:
        Path(json_out).write_text(json.dumps({
            "camera_matrix": res.camera_matrix.tolist(), "dist_coeffs": res.dist_coeffs.tolist(),
            "rms_px": res.rms_px, "image_size": res.image_size, "per_view_rms_px": res.per_view_rms_px,
            "rejected": res.rejected}, indent=2))
    if res.rms_px > max_rms:
        _fail(f"reprojection RMS {res.rms_px:.3f} px > --max-rms {max_rms}: not written to {out} "
              "(drop blurred views, check --square-mm and that the print is flat)")
    try:
        cal = load_or_new(out, res.image_size, camera_id)
    except CalibrationFileError as exc:
        raise click.ClickException(str(exc)) from None
    cal.lens = Lens(camera_matrix=res.camera_matrix.tolist(), dist_coeffs=res.dist_coeffs.tolist(),
                    rms_px=round(res.rms_px, 4))
    write_camera(cal, out)
    click.echo(f"lens written to {out}")


@calibrate.command()
@_pattern_opts
@click.option("--px-per-mm", type=float, default=300 / 25.4, show_default="300 dpi")
@click.option("--out", required=True, type=click.Path(dir_okay=False))
def board(pattern: str, cols: int, rows: int, square_mm: float, marker_mm: float | None, dictionary: str,
          legacy_charuco: bool, px_per_mm: float, out: str) -> None:
    """Write a printable board image (print at 100 % scale, measure a square, pass --square-mm)."""
    import cv2

    from calibration.synthetic import board_image

    spec = _spec(pattern, cols, rows, square_mm, marker_mm, dictionary, legacy_charuco)
    tex = board_image(spec, px_per_mm)
    if not cv2.imwrite(out, tex.image):
        _fail(f"cannot write {out}")
    click.echo(f"{out}: {tex.image.shape[1]}x{tex.image.shape[0]} px at {px_per_mm * 25.4:.0f} dpi")


# -------------------------------------------------------------------------------------- zones
class _LaneParam(click.ParamType):
    name = "NAME=POINTS"

    def convert(self, value, param, ctx):  # type: ignore[no-untyped-def]
        if isinstance(value, tuple):
            return value
        if "=" not in value:
            self.fail(f"{value!r} is not NAME=\"x,y x,y ...\"", param, ctx)
        name, pts = value.split("=", 1)
        return name.strip(), pts


@calibrate.command()
@click.option("--camera", "camera_path", required=True, type=click.Path(dir_okay=False),
              help="Camera YAML (created from the snapshot if missing).")
@click.option("--snapshot", default=None,
              help="Image, video or stream URL (rtsp://...) of the camera's full-resolution view.")
@click.option("--at", "at_s", type=float, default=0.0, help="Seconds into a video snapshot.")
@click.option("--camera-id", default=None, help="Camera id when creating the file.")
@click.option("--capture", default=None, help='Capture polygon "x,y x,y x,y ...".')
@click.option("--lane", "lanes", multiple=True, type=_LaneParam(), help='Lane polygon NAME="x,y ..." (repeatable).')
@click.option("--exclude", "excludes", multiple=True, help='Exclusion polygon "x,y ..." (repeatable).')
@click.option("--remove-lane", "remove_lanes", multiple=True, help="Delete a lane by name.")
@click.option("--clear-exclusions", is_flag=True, help="Drop existing exclusion polygons first.")
@click.option("--preview", type=click.Path(dir_okay=False), default=None,
              help="Write the snapshot with the zones drawn on it.")
@click.option("--serve", is_flag=True, help="Serve the zones editor web page.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8765, show_default=True)
def zones(camera_path: str, snapshot: str | None, at_s: float, camera_id: str | None, capture: str | None,
          lanes: tuple[tuple[str, str], ...], excludes: tuple[str, ...], remove_lanes: tuple[str, ...],
          clear_exclusions: bool, preview: str | None, serve: bool, host: str, port: int) -> None:
    """Capture zone, named lanes and exclusion masks (image pixels), from flags or a web page."""
    import cv2

    from calibration.camfile import load_or_new, write_camera
    from calibration.zones import ZoneError, draw_zones, load_snapshot, parse_points, validate_zones

    try:
        img = load_snapshot(snapshot, at_s) if snapshot else None
        size = (img.shape[1], img.shape[0]) if img is not None else None
        cal = load_or_new(camera_path, size, camera_id)
        z = cal.zones.model_copy(deep=True)
        if capture is not None:
            z.capture = parse_points(capture, "capture")
        for name in remove_lanes:
            if name not in z.lanes:
                raise ZoneError(f"--remove-lane {name}: no such lane (have {sorted(z.lanes)})")
            del z.lanes[name]
        for name, pts in lanes:
            z.lanes[name] = parse_points(pts, f"lane {name}")
        if clear_exclusions:
            z.exclusion = []
        z.exclusion += [parse_points(e, f"exclusion {i + 1}") for i, e in enumerate(excludes)]
        z = validate_zones(Zones.model_validate(z.model_dump()), (cal.image_size[0], cal.image_size[1]))
    except (ZoneError, CalibrationFileError) as exc:
        raise click.ClickException(str(exc)) from None
    changed = z != cal.zones or not Path(camera_path).exists()
    if changed:
        cal.zones = z
        write_camera(cal, camera_path)
        click.echo(f"zones written to {camera_path}: capture={'yes' if z.capture else 'no'}, "
                   f"lanes={sorted(z.lanes)}, exclusions={len(z.exclusion)}")
    if preview:
        if img is None:
            _fail("--preview needs --snapshot")
        assert img is not None
        cv2.imwrite(preview, draw_zones(img, z, cal.road_plane))
        click.echo(f"preview written to {preview}")
    if serve:
        if img is None:
            _fail("--serve needs --snapshot (the page draws on it)")
        import uvicorn

        from calibration.web.app import create_app

        assert img is not None
        app = create_app(Path(camera_path), img)
        if host not in ("127.0.0.1", "localhost", "::1"):
            click.echo(f"warning: the editor has no login; anyone who can reach {host}:{port} can change the "
                       "zones (use an SSH tunnel to 127.0.0.1 instead)", err=True)
        click.echo(f"zones editor on http://{host}:{port}/  (Ctrl+C to stop)")
        uvicorn.run(app, host=host, port=port, log_level="warning")


# --------------------------------------------------------------------------------------- road
_ROAD_PT = re.compile(r"^\s*([-+0-9.eE]+),([-+0-9.eE]+):([-+0-9.eE]+),([-+0-9.eE]+)\s*$")


def parse_correspondences(text: str) -> tuple[list[list[float]], list[list[float]]]:
    """'u,v:X,Y u,v:X,Y ...' -> (image points, road points)."""
    img, road = [], []
    for tok in re.split(r"[;\s]+", text.strip()):
        if not tok:
            continue
        m = _ROAD_PT.match(tok)
        if not m:
            raise click.BadParameter(f"{tok!r} is not u,v:X,Y (image pixels : road metres)", param_hint="--points")
        try:
            u, v, x, y = (float(g) for g in m.groups())
        except ValueError:
            raise click.BadParameter(f"{tok!r} has a non-numeric value", param_hint="--points") from None
        img.append([u, v])
        road.append([x, y])
    return img, road


@calibrate.command()
@click.option("--camera", "camera_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--points", required=True,
              help='>= 4 pairs "u,v:X,Y ..." (image pixels : road metres, X across, Y along the road).')
@click.option("--ransac", is_flag=True, help="Reject mis-clicked points (needs >= 5).")
@click.option("--ransac-threshold", type=float, default=0.25, show_default=True, help="Inlier distance, metres.")
@click.option("--max-rms-m", type=float, default=0.25, show_default=True,
              help="Refuse to write a fit whose reprojection RMS (m) is above this.")
@click.option("--snapshot", default=None, help="Image / video / stream of the view, for --preview.")
@click.option("--preview", type=click.Path(dir_okay=False), default=None,
              help="Write the snapshot with the road grid (lane columns, 5 m rows) drawn on it.")
def road(camera_path: str, points: str, ransac: bool, ransac_threshold: float, max_rms_m: float,
         snapshot: str | None, preview: str | None) -> None:
    """Road-plane homography from image points with known road coordinates (lane width, markings)."""
    from calibration import homography as hg
    from calibration.camfile import write_camera

    if preview and not snapshot:
        _fail("--preview needs --snapshot")
    img, rd = parse_correspondences(points)
    try:
        cal = load_camera(camera_path)
        w, h = cal.image_size
        outside = [i + 1 for i, (u, v) in enumerate(img) if not (0 <= u <= w and 0 <= v <= h)]
        if outside:
            raise hg.HomographyError(f"image point(s) {outside} lie outside the {w}x{h} image")
        fit = hg.fit_homography(img, rd, ransac=ransac, ransac_threshold_m=ransac_threshold)
    except (hg.HomographyError, CalibrationFileError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{'#':>3} {'image u,v':>20} {'road X,Y (m)':>18} {'error m':>8} {'error px':>8}")
    for i, (p, q) in enumerate(zip(img, rd, strict=True)):
        flag = "" if fit.inliers[i] else "  OUTLIER (ignored)"
        click.echo(f"{i + 1:>3} {p[0]:>9.1f},{p[1]:<10.1f} {q[0]:>8.2f},{q[1]:<9.2f} "
                   f"{fit.residuals_m[i]:8.3f} {fit.residuals_px[i]:8.2f}{flag}")
    n_in = int(fit.inliers.sum())
    if n_in == 4:
        click.echo("note: 4 points fit exactly (error 0); add more points to measure the accuracy")
    click.echo(f"reprojection RMS {fit.rms_m:.3f} m ({fit.rms_px:.2f} px) over {n_in} points, max {fit.max_m:.3f} m")
    if fit.rms_m > max_rms_m:
        _fail(f"RMS {fit.rms_m:.3f} m > --max-rms-m {max_rms_m}: not written (check point order and metres)")
    hm = fit.homography
    cal.road_plane = RoadPlane(image_points=[list(map(float, p)) for p in np.asarray(img)[fit.inliers]],
                               road_points_m=[list(map(float, p)) for p in np.asarray(rd)[fit.inliers]],
                               homography=hm.tolist(), rms_m=round(fit.rms_m, 5))
    write_camera(cal, camera_path)
    cx, cy = w / 2, h * 0.75
    pw, ph = hg.expected_plate_size_px(hm, (cx, cy))
    click.echo(f"road_plane written to {camera_path}; a plate at image ({cx:.0f},{cy:.0f}) is ~{pw:.0f}x{ph:.0f} px")
    if cal.lens is not None and any(abs(c) > 0 for c in cal.lens.dist_coeffs):
        from calibration.lens import undistort_points

        shift = np.linalg.norm(undistort_points(img, cal.lens.camera_matrix, cal.lens.dist_coeffs)
                               - np.asarray(img), axis=1).max()
        click.echo(f"note: lens distortion moves these points by up to {shift:.1f} px; the homography is fitted "
                   "on raw pixels, as the edge applies it (RoadPlane.to_road)")
    if preview:
        import cv2

        from calibration.zones import ZoneError, draw_zones, load_snapshot

        try:
            snap = load_snapshot(snapshot or "")
        except ZoneError as exc:
            raise click.ClickException(str(exc)) from None
        if (snap.shape[1], snap.shape[0]) != (w, h):
            _fail(f"snapshot is {snap.shape[1]}x{snap.shape[0]}, camera is {w}x{h}")
        out = draw_zones(snap, cal.zones, cal.road_plane)
        for p, q in zip(img, rd, strict=True):
            cv2.circle(out, (round(p[0]), round(p[1])), max(4, w // 400), (255, 0, 255), -1)
            cv2.putText(out, f"{q[0]:g},{q[1]:g}", (round(p[0]) + 6, round(p[1]) + 14), cv2.FONT_HERSHEY_SIMPLEX,
                        max(0.5, w / 2500), (255, 0, 255), max(1, w // 1500))
        cv2.imwrite(preview, out)
        click.echo(f"preview written to {preview}")


# ------------------------------------------------------------------------------------ fitness
@calibrate.command()
@click.option("--camera", "camera_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--video", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Short recording: checks frame size, measures exposure and sharpness per zone.")
@click.option("--speed-kmh", type=float, default=60.0, show_default=True, help="Typical vehicle speed.")
@click.option("--shutter-ms", type=float, default=1.0, show_default=True, help="Exposure time.")
@click.option("--min-char-px", type=float, default=16.0, show_default=True)
@click.option("--min-face-px", type=float, default=40.0, show_default=True)
@click.option("--max-blur-px", type=float, default=2.0, show_default=True)
@click.option("--models", "models_dir", type=click.Path(file_okay=False), default=None,
              help="Directory with vehicles.onnx (+ plates.onnx, occupants.onnx) to also measure detected "
                   "plate/face sizes in the recording (default: ./models when it has vehicles.onnx).")
@click.option("--no-models", is_flag=True, help="Geometry and image measurements only.")
@click.option("--model-frames", type=int, default=8, show_default=True, help="Frames to run the models on.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Write the report as JSON.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def fitness(camera_path: str, video: str | None, speed_kmh: float, shutter_ms: float, min_char_px: float,
            min_face_px: float, max_blur_px: float, models_dir: str | None, no_models: bool, model_frames: int,
            json_out: str | None, fmt: str) -> None:
    """Per zone: plate character and face size in px, motion blur, and a resolvable verdict.

    Exit status 0 when plates and occupants are resolvable in every zone, 3 otherwise.
    """
    from calibration.fitness import Criteria, FitnessError, assess

    if no_models:
        models_dir = None
    elif models_dir is None and video is not None and Path("models/vehicles.onnx").is_file():
        models_dir = "models"
    try:
        rep = assess(load_camera(camera_path), speed_kmh=speed_kmh, shutter_ms=shutter_ms, video=video,
                     criteria=Criteria(min_char_px, min_face_px, max_blur_px), models_dir=models_dir,
                     model_frames=model_frames)
    except (FitnessError, CalibrationFileError) as exc:
        raise click.ClickException(str(exc)) from None
    data = rep.to_json()
    if json_out:
        Path(json_out).write_text(json.dumps(data, indent=2))
    click.echo(json.dumps(data, indent=2) if fmt == "json" else rep.to_text())
    fit = all(z.plates == "resolvable" and z.occupants == "resolvable" for z in rep.zones)
    sys.exit(0 if fit else 3)


# --------------------------------------------------------------------------------- thresholds
@calibrate.command()
@click.option("--reviews", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Server review export (event_id,camera_id,site_id,violation,confidence,decision,reviewed_at).")
@click.option("--camera", "camera_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--target-precision", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.95, show_default=True)
@click.option("--violation", "violations", multiple=True, help="Only these violation types (default: all present).")
@click.option("--min-reviews", type=int, default=30, show_default=True,
              help="Fewest reviewed events per violation to decide at all.")
@click.option("--min-support", type=int, default=10, show_default=True,
              help="Fewest events at/above a threshold for its precision to count.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="PNG: P/R vs threshold + confusion.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None)
@click.option("--dry-run", is_flag=True, help="Report only; do not change the camera YAML.")
def thresholds(reviews: str, camera_path: str, target_precision: float, violations: tuple[str, ...],
               min_reviews: int, min_support: int, plot: str | None, json_out: str | None, dry_run: bool) -> None:
    """Per violation type, the lowest confidence threshold reaching the target precision.

    Writes thresholds.<violation>.min_confidence (keeping k/n/min_driver_px). Exit status 3
    when some violation type could not be set (unreachable target or too few reviews).
    """
    from calibration.camfile import write_camera
    from calibration.thresholds import ReviewExportError, choose_threshold, plot_choices, read_reviews
    from edge.camera import ViolationThreshold

    try:
        cal = load_camera(camera_path)
        rows = read_reviews(reviews)
    except (ReviewExportError, CalibrationFileError) as exc:
        raise click.ClickException(str(exc)) from None
    mine = [r for r in rows if r.camera_id == cal.camera_id]
    if not mine:
        cams = sorted({r.camera_id for r in rows})
        _fail(f"{reviews} has no reviews for camera {cal.camera_id!r} (cameras in the file: {cams})")
    kinds = list(violations) or sorted({r.violation for r in mine})
    choices = [choose_threshold(mine, cal.camera_id, v, target_precision, min_reviews=min_reviews,
                                min_support=min_support) for v in kinds]
    for ch in choices:
        click.echo(f"{cal.camera_id} {ch.violation}: {ch.n_confirmed} confirmed, {ch.n_rejected} rejected -> "
                   f"{ch.status.upper()}: {ch.message}")
        if ch.status == "ok" and ch.threshold is not None:
            old = cal.thresholds.get(ch.violation) or ViolationThreshold.model_validate({})
            cal.thresholds[ch.violation] = old.model_copy(update={"min_confidence": round(ch.threshold, 6)})
    if plot:
        plot_choices(choices, plot)
        click.echo(f"plot written to {plot}")
    if json_out:
        Path(json_out).write_text(json.dumps([c.to_json() for c in choices], indent=2))
    if not dry_run and any(c.status == "ok" for c in choices):
        write_camera(cal, camera_path)
        click.echo(f"thresholds written to {camera_path}")
    if any(c.status != "ok" for c in choices):
        sys.exit(3)


@calibrate.command()
@click.option("--camera", "camera_path", required=True, type=click.Path(exists=True, dir_okay=False))
def show(camera_path: str) -> None:
    """Summarise a camera YAML (validates it)."""
    try:
        cal = load_camera(camera_path)
    except CalibrationFileError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"camera {cal.camera_id}: {cal.image_size[0]}x{cal.image_size[1]}")
    if cal.lens:
        k = cal.lens.camera_matrix
        click.echo(f"  lens: fx={k[0][0]:.1f} fy={k[1][1]:.1f} cx={k[0][2]:.1f} cy={k[1][2]:.1f} "
                   f"rms={cal.lens.rms_px} px")
    z = cal.zones
    click.echo(f"  zones: capture={'yes' if z.capture else 'no'} lanes={sorted(z.lanes)} exclusions={len(z.exclusion)}")
    if cal.road_plane:
        click.echo(f"  road plane: {len(cal.road_plane.image_points)} points, rms={cal.road_plane.rms_m} m")
    for v, t in cal.thresholds.items():
        click.echo(f"  threshold {v}: min_confidence={t.min_confidence} k={t.k}/n={t.n}")
