"""Baseline: the off-the-shelf PP-OCR recogniser bundled with rapidocr 3.10 on the same crops.

Run:  python -m models.train.plate_reader_compare ../shared/datasets/plates-cn-crops
(needs the `compare` extra: pip install 'rapidocr==3.10.*'). Recognition only (no text
detection, no angle classifier): the crops are already plates. Its output is normalised
generously before scoring: upper-cased, the separator dot and anything outside the plate
charset dropped, and O/I (never issued on plates) read as 0/1.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from edge.detectors.plate_reader import CHARSET
from models.train.plate_reader import load_eval_set, score_reads


def normalise(text: str) -> str:
    """PP-OCR output -> plate text: '皖A·1234O' -> '皖A12340'."""
    t = text.upper().replace("O", "0").replace("I", "1")
    return "".join(c for c in t if c in CHARSET)


def rapidocr_baseline(data: Path, part: str = "test") -> dict[str, Any]:
    """Scores of rapidocr's PP-OCR recogniser on an evaluation folder (see load_eval_set)."""
    from rapidocr import RapidOCR

    crops, texts, desc = load_eval_set(data, part)
    engine = RapidOCR()
    preds: list[str] = []
    t = time.perf_counter()
    for c in crops:
        r = engine(c, use_det=False, use_cls=False, use_rec=True)
        txts = getattr(r, "txts", None)
        preds.append(normalise(txts[0]) if txts else "")
    ms = (time.perf_counter() - t) / len(crops) * 1000
    out: dict[str, Any] = {"model": "rapidocr 3.10 PP-OCRv6 rec (small), recognition only", "set": desc}
    out.update(score_reads(texts, preds))
    out["ms_per_plate_batch1"] = round(ms, 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("data", type=Path)
    ap.add_argument("--part", default="test")
    a = ap.parse_args()
    print(json.dumps(rapidocr_baseline(a.data, a.part), ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
