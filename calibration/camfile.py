"""Read-modify-write of one camera YAML, so each `roadeye calibrate` step replaces only its own
section (lens, zones, road_plane, thresholds) and never wipes the others."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from edge.camera import CalibrationFileError, CameraCalibration, load_camera, save_camera


def default_camera_id(path: str | Path) -> str:
    """'cam01.camera.yaml' -> 'cam01' (the id used when a command creates a new file)."""
    name = Path(path).name
    for suffix in (".camera.yaml", ".camera.yml", ".yaml", ".yml"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def load_or_new(path: str | Path, image_size: tuple[int, int] | None, camera_id: str | None) -> CameraCalibration:
    """Load `path`, or start a new calibration when it does not exist yet.

    An existing file whose image size differs from `image_size` is an error: mixing
    resolutions would silently put zones and K on the wrong pixels.
    """
    p = Path(path)
    if p.exists():
        cal = load_camera(p)
        if image_size is not None and tuple(cal.image_size) != tuple(image_size):
            raise CalibrationFileError(
                f"{p}: image_size is {cal.image_size[0]}x{cal.image_size[1]} but the input is "
                f"{image_size[0]}x{image_size[1]}; use images at the camera's full resolution"
            )
        if camera_id is not None and camera_id != cal.camera_id:
            raise CalibrationFileError(f"{p}: camera_id is {cal.camera_id!r}, not {camera_id!r}")
        return cal
    if image_size is None:
        raise CalibrationFileError(
            f"{p}: does not exist (create it with `calibrate lens` or `calibrate zones --snapshot`)"
        )
    return CameraCalibration(camera_id=camera_id or default_camera_id(p), image_size=image_size)


def write_camera(cal: CameraCalibration, path: str | Path) -> None:
    """Validate, then replace the file atomically (a crash never leaves half a YAML)."""
    p = Path(path)
    CameraCalibration.model_validate(cal.model_dump())
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    os.close(fd)
    try:
        save_camera(cal, tmp)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
