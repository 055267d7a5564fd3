"""Tiny clips made in the tests with PyAV: a bar sweeping across the frame, a green corner (to see rotations),
and a sine tone for the sound."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image

TONE_HZ = 440


def frame_pixels(index: int, frames: int, width: int, height: int) -> np.ndarray:
    pixels = np.full((height, width, 3), 40, np.uint8)
    pixels[:, : (index + 1) * width // frames] = (200, 30, 30)
    pixels[: height // 3, : width // 3] = (0, 220, 0)  # the top-left corner, to tell which way is up
    return pixels


def make_clip(
    path: Path,
    *,
    frames: int = 8,
    width: int = 64,
    height: int = 48,
    fps: int = 8,
    rotation: int = 0,
    sound: bool = True,
) -> bytes:
    """Write a clip (MP4 with H.264 and AAC, or WebM with VP9 and Opus, by `path`'s suffix); returns its bytes."""
    mp4 = path.suffix in (".mp4", ".mov")
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264" if mp4 else "libvpx-vp9", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        if rotation:
            video.set_display_rotation(rotation)
        audio = container.add_stream("aac" if mp4 else "libopus", rate=48_000) if sound else None
        if audio is not None:
            audio.layout = "mono"
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(frame_pixels(index, frames, width, height), format="rgb24")
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if audio is not None:
            _write_tone(container, audio, seconds=frames / fps)
    return path.read_bytes()


def _write_tone(container: av.container.OutputContainer, audio: av.AudioStream, *, seconds: float) -> None:
    rate = 48_000
    tone = (0.3 * np.sin(2 * np.pi * TONE_HZ * np.arange(int(rate * seconds)) / rate)).astype(np.float32)
    size = audio.codec_context.frame_size or 1024
    for start in range(0, len(tone), size):
        frame = av.AudioFrame.from_ndarray(tone[start : start + size].reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate, frame.pts = rate, start
        for packet in audio.encode(frame):
            container.mux(packet)
    for packet in audio.encode():
        container.mux(packet)


def make_gif(path: Path, *, frames: int = 4, width: int = 64, height: int = 48) -> bytes:
    images = [Image.fromarray(frame_pixels(i, frames, width, height)) for i in range(frames)]
    images[0].save(path, save_all=True, append_images=images[1:], duration=100, loop=0)
    return path.read_bytes()


def read_frames(path: Path) -> list[Image.Image]:
    with av.open(str(path)) as container:
        return [frame.to_image() for frame in container.decode(video=0)]


def sound_seconds(path: Path) -> float:
    """Seconds of sound in the clip's first audio stream (0 when it has none)."""
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return 0.0
        return sum(frame.samples / frame.sample_rate for frame in container.decode(audio=0))


def tone_strength(path: Path) -> float:
    """How much of the sound is the test tone: the share of its spectrum's energy near TONE_HZ."""
    with av.open(str(path)) as container:
        samples = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
        rate = container.streams.audio[0].codec_context.sample_rate
    spectrum = np.abs(np.fft.rfft(samples)) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    return float(spectrum[np.abs(freqs - TONE_HZ) < 20].sum() / spectrum.sum())
