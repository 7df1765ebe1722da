"""The edge runtime must never pull in torch or ultralytics (boxes ship without them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_importing_the_edge_pipeline_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import edge.pipeline, edge.runner, edge.commands, edge.publish, edge.sources, edge.score\n"
        "import edge.detectors, edge.detectors.yolo, edge.detectors.plate_reader, edge.demo\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'ultralytics', 'torchvision'))\n"
        "print(','.join(bad))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=Path(__file__).resolve().parents[3])
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "", f"edge imports {p.stdout.strip()}"
