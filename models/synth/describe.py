"""Markdown summary of a rendered clip's ground truth (used for sample_videos/README.md)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path


def describe_clip(gt_path: str | Path, *, min_driver_px: int = 48) -> str:
    """Vehicles, violators (with the frames where their driver is large enough to judge),
    plates and conditions of one clip, as a markdown section."""
    gt_path = Path(gt_path)
    gt = json.loads(gt_path.read_text(encoding="utf-8"))
    video = gt_path.parent / gt["video"]
    size_mb = video.stat().st_size / 1e6 if video.exists() else float("nan")
    vs = gt["vehicles"]
    types = Counter(v["type"] for v in vs)
    lines = [
        f"### `{gt['video']}`",
        "",
        f"- {gt['width']}x{gt['height']}, {gt['fps']:g} fps, {gt['frames']} frames "
        f"({gt['frames'] / gt['fps']:.1f} s), {size_mb:.1f} MB, H.264 (libx264, yuv420p)",
        f"- conditions: light={gt['conditions']['light']}, weather={gt['conditions']['weather']}; camera "
        f"{gt['camera']['height_m']:g} m up, tilt {gt['camera']['tilt_deg']:.1f} deg, focal "
        f"{gt['camera']['focal_px']:.0f} px",
        f"- {len(vs)} vehicles seen: " + ", ".join(f"{n} {t}" for t, n in types.most_common()),
    ]
    viol = [v for v in vs if v["violations"]]
    clean = [v for v in vs if not v["violations"] and v["type"] != "two_wheeler"]
    lines.append(f"- {len(viol)} violators, {len(clean)} clean four-wheelers")
    lines += ["", "| id | type | colour | plate | belt | phone | passenger | violations | frames | judgeable frames |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for v in vs:
        if v["type"] == "two_wheeler":
            continue
        fr = [t["frame"] for t in v["track"]]
        ok = [t["frame"] for t in v["track"] if t["driver_box"] and t["driver_box"][3] - t["driver_box"][1]
              >= min_driver_px]
        span = f"{min(fr)}-{max(fr)}" if fr else "-"
        jspan = f"{min(ok)}-{max(ok)} ({len(ok)})" if ok else "none"
        lines.append(f"| {v['id']} | {v['type']} | {v['color']} | {v['plate']} ({v['plate_kind']}) | {v['belt']} | "
                     f"{v['phone']} | {'yes' if v['passenger'] else 'no'} | {', '.join(v['violations']) or '-'} | "
                     f"{span} | {jspan} |")
    tw = [v for v in vs if v["type"] == "two_wheeler"]
    if tw:
        lines += ["", f"Two-wheelers (no front plate, no windshield): ids {', '.join(str(v['id']) for v in tw)}."]
    return "\n".join(lines) + "\n"
