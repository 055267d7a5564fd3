"""Clips in and out (PyAV and Pillow, no torch): what an upload's headers say, its frames upright, and a painted
clip encoded with its sound re-encoded (never copied) and its provenance in the container's metadata.

PyAV's wheels bundle FFmpeg with GPL x264 (docs/video.md). Animated GIF and WebP are read with Pillow, which
reads both whole; FFmpeg's WebP decoder does not animate.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image, ImageSequence

from nst_shared.clip_info import ClipInfo, clip_kind
from nst_shared.errors import UnreadableVideo, UnsupportedImageFormat, VideoHeadersLied

_CODECS = {"mp4": ("libx264", "aac"), "webm": ("libvpx-vp9", "libopus")}
_AUDIO_RATE = 48_000  # Opus takes 48 kHz (and a few lower rates); AAC takes it too
_COMMENT = "comment"  # the metadata tag the provenance goes in: MP4's ©cmt, Matroska's COMMENT
_PILLOW_KINDS = ("gif", "webp")


def probe_file(path: str | Path) -> ClipInfo:
    """The headers of the clip at `path`; reads the container's index, decodes no frame of MP4 or WebM."""
    kind = clip_kind(Path(path).read_bytes()[:32])
    if kind is None:
        raise UnreadableVideo("not a clip this service reads (MP4, MOV, WebM, animated GIF or WebP)")
    if kind in _PILLOW_KINDS:
        return _probe_animation(path, kind)
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            if not container.streams.video:
                raise UnreadableVideo("the clip has no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            if not rate or rate <= 0:
                raise UnreadableVideo("the clip's frame rate is unknown")
            duration_s = _duration_s(container, stream)
            frames = stream.frames or round(duration_s * rate)
            return ClipInfo(
                kind=kind,
                frames=int(frames),
                rate=str(Fraction(rate).limit_denominator(100_000)),
                duration_s=duration_s,
                width=stream.codec_context.width,
                height=stream.codec_context.height,
                audio=bool(container.streams.audio),
            )
    except av.FFmpegError as exc:
        if exc.errno == errno.ENOMEM:  # a limit on this process, not a fault of the file
            raise MemoryError(str(exc)) from None
        raise UnreadableVideo(f"the clip cannot be read: {exc}") from None


def _duration_s(container: Any, stream: Any) -> float:
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration / av.time_base)
    raise UnreadableVideo("the clip's duration is unknown")


def _probe_animation(path: str | Path, kind: str) -> ClipInfo:
    try:
        with Image.open(path, formats=(kind.upper(),)) as image:
            frames = getattr(image, "n_frames", 1)
            if frames < 2:
                raise UnsupportedImageFormat(f"a still {kind.upper()}: send it as a PNG, JPEG or WebP picture")
            duration_ms = 0
            for frame in ImageSequence.Iterator(image):
                duration_ms += int(frame.info.get("duration") or 100)
            width, height = image.size
    except (UnreadableVideo, UnsupportedImageFormat):
        raise
    except Exception as exc:  # Pillow's own errors on a damaged file
        raise UnreadableVideo(f"the animation cannot be read: {exc}") from None
    duration_s = max(duration_ms, 1) / 1000
    rate = Fraction(frames / duration_s).limit_denominator(1000)
    return ClipInfo(kind, frames, str(rate), duration_s, width, height, audio=False)


def iter_frames(path: str | Path, info: ClipInfo, *, max_pixels: int) -> Iterator[Image.Image]:
    """The clip's frames, upright RGB, one at a time. A clip whose frames outnumber its headers' count (with
    a frame's slack) or outgrow `max_pixels` raises VideoHeadersLied, so a lying file fails its job."""
    frames = _animation_frames(path) if info.kind in _PILLOW_KINDS else _av_frames(path, max_pixels)
    for index, image in enumerate(frames):
        if index > info.frames:
            raise VideoHeadersLied(f"the clip holds more frames than its headers say ({info.frames})")
        if image.width * image.height > max_pixels:
            raise VideoHeadersLied(f"frame {index + 1} is {image.width}x{image.height}, more than its headers say")
        yield image


def _av_frames(path: str | Path, max_pixels: int) -> Iterator[Image.Image]:
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            # FFmpeg itself refuses a frame far past the headers' size before allocating it; a frame a little
            # past them is refused below, as VideoHeadersLied.
            stream.codec_context.options = {"max_pixels": str(4 * max_pixels)}
            for frame in container.decode(stream):
                if frame.width * frame.height > max_pixels:  # before the RGB copy
                    raise VideoHeadersLied(f"a frame is {frame.width}x{frame.height}, more than its headers say")
                image = frame.to_image()  # type: ignore[no-untyped-call]  # PyAV leaves it untyped
                rotation = getattr(frame, "rotation", 0) or 0
                yield image.rotate(rotation, expand=True) if rotation % 360 else image  # counterclockwise, as FFmpeg's
    except av.FFmpegError as exc:
        raise UnreadableVideo(f"the clip cannot be decoded: {exc}") from None


def _animation_frames(path: str | Path) -> Iterator[Image.Image]:
    with Image.open(path) as image:
        for frame in ImageSequence.Iterator(image):
            yield frame.convert("RGB")


def encode_clip(
    frames: Iterable[Image.Image],
    out: str | Path,
    *,
    rate: Fraction,
    format: str = "mp4",
    sound_from: str | Path | None = None,
    record: dict[str, Any] | None = None,
) -> int:
    """Write `frames` (RGB pictures of one size) to `out` as MP4 (H.264, yuv420p) or WebM (VP9) at `rate`, with
    the sound of the clip `sound_from` re-encoded (AAC, Opus) up to the last frame's end and `record` as JSON in
    the metadata; returns the frames written. An odd side loses its last pixel row (yuv420p halves colour)."""
    video_codec, audio_codec = _CODECS[format]
    written = 0
    with av.open(str(out), "w", format=format) as container:
        if record is not None:
            container.metadata[_COMMENT] = json.dumps(record, separators=(",", ":"))
        stream: Any = None
        for image in frames:
            if stream is None:
                stream = container.add_stream(video_codec, rate=rate)
                stream.width, stream.height = image.width // 2 * 2, image.height // 2 * 2
                stream.pix_fmt = "yuv420p"
                if format == "webm":
                    stream.options = {"crf": "32", "b": "0", "row-mt": "1", "deadline": "good", "cpu-used": "4"}
                else:
                    stream.options = {"crf": "20", "preset": "medium"}
                sound = _add_audio(container, sound_from, audio_codec)
            pixels = np.asarray(image.convert("RGB"))[: stream.height, : stream.width]
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")):
                container.mux(packet)
            written += 1
        if stream is None:
            raise ValueError("no frames to encode")
        for packet in stream.encode():
            container.mux(packet)
        if sound is not None:
            _copy_sound(container, sound, sound_from, until_s=float(written / rate))
    return written


def _add_audio(container: Any, source: str | Path | None, codec: str) -> Any:
    if source is None or clip_kind(Path(source).read_bytes()[:32]) in (None, *_PILLOW_KINDS):
        return None
    with av.open(str(source), metadata_errors="ignore") as clip:
        if not clip.streams.audio:
            return None
        channels = min(clip.streams.audio[0].codec_context.channels or 1, 2)
    stream = container.add_stream(codec, rate=_AUDIO_RATE)
    stream.layout = "stereo" if channels == 2 else "mono"
    return stream


def _copy_sound(container: Any, stream: Any, source: str | Path | None, *, until_s: float) -> None:
    """Decode the source's first audio stream and encode it into `stream`, cut at `until_s`."""
    resampler = av.AudioResampler(format=stream.codec_context.format.name, layout=stream.layout, rate=_AUDIO_RATE)
    frame_size = stream.codec_context.frame_size or 1024
    fifo = av.AudioFifo()
    limit = int(until_s * _AUDIO_RATE)
    samples = 0
    with av.open(str(source), metadata_errors="ignore") as clip:
        for frame in clip.decode(audio=0):
            frame.pts = None
            for resampled in resampler.resample(frame):
                fifo.write(resampled)
            while fifo.samples >= frame_size and samples < limit:
                samples += _encode_audio(container, stream, fifo.read(frame_size), samples)
            if samples >= limit:
                break
    for resampled in resampler.resample(None):
        fifo.write(resampled)
    while fifo.samples and samples < limit:
        samples += _encode_audio(container, stream, fifo.read(min(frame_size, fifo.samples)), samples)
    for packet in stream.encode(None):
        container.mux(packet)


def _encode_audio(container: Any, stream: Any, frame: Any, pts: int) -> int:
    frame.pts, frame.sample_rate = pts, _AUDIO_RATE
    for packet in stream.encode(frame):
        container.mux(packet)
    return int(frame.samples)


def read_record(path: str | Path) -> dict[str, Any] | None:
    """The provenance in a clip's metadata (None when it has none or is no clip)."""
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            text = {k.lower(): v for k, v in container.metadata.items()}.get(_COMMENT)
        record = json.loads(text) if text else None
    except (av.FFmpegError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("params"), dict) else None
