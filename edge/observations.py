"""What the cascade saw of one tracked vehicle in one analysed frame, and a track's history.

Observations hold boxes and confidences only (full-resolution frame pixels); images are
kept just for the few frames that may become evidence, so a long track costs kilobytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from edge.types import Frame


@dataclass(frozen=True, slots=True)
class PlateObs:
    box: np.ndarray  # (4,) full-res
    confidence: float
    text: str | None = None
    char_confidences: tuple[float, ...] = ()
    read_confidence: float = 0.0


@dataclass(frozen=True, slots=True)
class OccupantObs:
    """The driver as decided for this frame, plus what must be blurred (passengers)."""

    driver_box: np.ndarray | None
    driver_conf: float
    seatbelt_conf: float  # best correctly-worn strap on the driver, 0 when none
    seatbelt_box: np.ndarray | None
    phone_conf: float  # best phone held by the driver, 0 when none
    phone_box: np.ndarray | None
    passenger_boxes: tuple[np.ndarray, ...] = ()
    face_boxes: tuple[np.ndarray, ...] = ()  # faces outside the driver box (blurred too)


@dataclass(frozen=True, slots=True)
class Observation:
    seq: int
    stream_ts: float
    captured_at: datetime
    vehicle_box: np.ndarray
    vehicle_conf: float
    vehicle_class: str
    in_zone: bool
    windshield_box: np.ndarray | None = None
    plate: PlateObs | None = None
    occupants: OccupantObs | None = None

    @property
    def driver_height(self) -> float:
        o = self.occupants
        if o is None or o.driver_box is None:
            return 0.0
        return float(o.driver_box[3] - o.driver_box[1])


@dataclass(slots=True)
class EvidenceCandidate:
    score: float
    frame: Frame
    obs: Observation
    #: regions to blur in this frame: this vehicle's passengers and every other windshield
    privacy: tuple[np.ndarray, ...] = ()


@dataclass(slots=True)
class TrackHistory:
    camera_id: str
    track_id: int
    observations: list[Observation] = field(default_factory=list)
    #: per violation type, the best frame showing it (and "plate": the best plate frame)
    best: dict[str, EvidenceCandidate] = field(default_factory=dict)
    decided: set[str] = field(default_factory=set)
    #: confident plate reads per text, and analysed frames since a plate was last found
    confident_reads: dict[str, int] = field(default_factory=dict)
    frames_since_plate: int = 0

    def note_plate(self, plate: PlateObs | None, min_conf: float) -> None:
        """Count this frame's plate read (None: the plate was not looked for, or not found)."""
        if plate is None:
            self.frames_since_plate += 1
            return
        self.frames_since_plate = 0
        worst = min(plate.char_confidences) if plate.char_confidences else plate.read_confidence
        if plate.text and worst >= min_conf:  # every character read at min_conf or better
            self.confident_reads[plate.text] = self.confident_reads.get(plate.text, 0) + 1

    def plate_settled(self, reads: int) -> bool:
        return any(n >= reads for n in self.confident_reads.values())

    def offer(self, key: str, score: float, frame: Frame, obs: Observation,
              privacy: tuple[np.ndarray, ...] = ()) -> None:
        cur = self.best.get(key)
        if cur is None or score > cur.score:
            self.best[key] = EvidenceCandidate(score, frame, obs, privacy)
