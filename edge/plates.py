"""Plate text voted per character across a track's frames.

Single-frame reads of a 9 MP plate crop at speed fail in different characters on different
frames (motion blur, a bolt over a digit), so each position is voted separately, weighted
by the reader's per-character confidence. Length first: blue/yellow plates have 7
characters, green new-energy plates 8, and mixing positions of reads of different lengths
would shift every character after the difference.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
#: a mainland plate: province, issuing-authority letter, then 5 (blue/yellow, optionally
#: ending in 学/警/挂) or 6 (green new-energy) characters.
_AN = f"[{LETTERS}0-9]"
PLATE_RE = re.compile(rf"^[{PROVINCES}][{LETTERS}]({_AN}{{5}}|{_AN}{{4}}[学警挂]|{_AN}{{6}})$")


class PlateTextLike(Protocol):
    @property
    def text(self) -> str: ...
    @property
    def char_confidences(self) -> Sequence[float]: ...
    @property
    def confidence(self) -> float: ...


@dataclass(frozen=True, slots=True)
class VotedPlate:
    text: str
    char_confidences: list[float]
    confidence: float
    frames: int  # reads that took part in the vote (those of the winning length)


def is_valid_plate(text: str) -> bool:
    return bool(PLATE_RE.match(text))


def vote_plate(reads: Sequence[PlateTextLike], min_read_confidence: float = 0.0) -> VotedPlate | None:
    """Confidence-weighted per-position vote over reads of the winning length.

    Reads that form a valid mainland plate outweigh malformed ones 2:1 in the length vote.
    The confidence of a character is the weight of its winning votes divided by the number
    of voting reads, so it drops both when frames disagree and when the reader was unsure.
    """
    usable = [r for r in reads if r.text and r.confidence >= min_read_confidence
              and len(r.char_confidences) == len(r.text)]
    if not usable:
        return None
    by_len: dict[int, float] = defaultdict(float)
    for r in usable:
        by_len[len(r.text)] += r.confidence * (2.0 if is_valid_plate(r.text) else 1.0)
    length = max(sorted(by_len), key=lambda n: by_len[n])
    same = [r for r in usable if len(r.text) == length]
    chars: list[str] = []
    confs: list[float] = []
    for pos in range(length):
        votes: dict[str, float] = defaultdict(float)
        for r in same:
            votes[r.text[pos]] += float(r.char_confidences[pos])
        # ties broken by character code so the result does not depend on read order
        best = max(sorted(votes), key=lambda c: votes[c])
        chars.append(best)
        confs.append(min(1.0, votes[best] / len(same)))
    text = "".join(chars)
    conf = min(confs) if confs else 0.0
    if not is_valid_plate(text):
        conf *= 0.5  # keep the read for a reviewer, but say it does not parse
    return VotedPlate(text, [round(c, 4) for c in confs], round(conf, 4), len(same))
