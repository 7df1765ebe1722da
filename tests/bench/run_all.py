"""`make bench`: run every tests/bench/bench_*.py and print one JSON document.

Each benchmark script prints a JSON object on its last stdout line; ratios are measured side
by side inside each script (never absolute timings compared across runs).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    results: dict[str, object] = {}
    failed = False
    for script in sorted(HERE.glob("bench_*.py")):
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                              cwd=HERE.parents[1])
        name = script.stem.removeprefix("bench_")
        lines = [ln for ln in proc.stdout.strip().splitlines() if ln.strip()]
        try:
            results[name] = json.loads(lines[-1]) if lines else None
        except json.JSONDecodeError:
            results[name] = {"error": "last stdout line is not JSON", "stdout_tail": lines[-5:]}
        if proc.returncode != 0:
            failed = True
            results[name] = {"error": f"exit {proc.returncode}", "stderr_tail": proc.stderr[-2000:],
                             "partial": results[name]}
        print(f"{script.name}: {time.monotonic() - t0:.1f}s", file=sys.stderr)
    print(json.dumps(results, indent=2, ensure_ascii=False))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
