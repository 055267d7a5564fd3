"""What a clip is before any of it is decoded: its kind from its first bytes, what its headers say, the media
types of the clips we write. No PyAV here: the API and the worker import this at start; FFmpeg loads only where a
clip is probed, decoded or encoded (video_io.py)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

MEDIA_TYPES: dict[str, str] = {"mp4": "video/mp4", "webm": "video/webm"}


@dataclass(frozen=True)
class ClipInfo:
    """What a clip's headers say (as stored: a quarter-turn rotation swaps the sides, never the area)."""

    kind: str  # mp4 (MP4 and MOV), webm (WebM and Matroska), gif, webp
    frames: int
    rate: str  # frames per second as a fraction, "30000/1001"
    duration_s: float
    width: int
    height: int
    audio: bool

    @property
    def fps(self) -> Fraction:
        return Fraction(self.rate)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClipInfo:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})


def clip_kind(data: bytes) -> str | None:
    """The kind of clip `data` may be, from its first bytes (None: not a clip). Any GIF counts, and a WebP
    marked animated: the probe tells a still one from a clip."""
    if data[4:8] == b"ftyp":
        return "mp4"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if data[:4] == b"GIF8":
        return "gif"
    if data[:4] == b"RIFF" and data[8:16] == b"WEBPVP8X" and len(data) > 20 and data[20] & 0x02:
        return "webp"
    return None
