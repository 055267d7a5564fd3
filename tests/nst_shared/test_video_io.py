"""Clips in and out: headers probed in a bounded child, frames upright, the sound re-encoded, provenance kept."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from nst_shared.clip_info import clip_kind
from nst_shared.errors import UnreadableVideo, UnsupportedImageFormat, VideoHeadersLied
from nst_shared.video_io import encode_clip, iter_frames, probe_file, read_record
from nst_shared.video_probe import ProbeRefused, probe
from tests.clips import make_clip, make_gif, read_frames, sound_seconds, tone_strength

MB = 2**20


def test_probe_reads_the_headers_in_a_child(tmp_path):
    data = make_clip(tmp_path / "a.mp4", frames=8, fps=8)
    info = probe(data, timeout_s=20, memory_bytes=1024 * MB)
    assert (info.kind, info.frames, info.fps, info.width, info.height, info.audio) == ("mp4", 8, 8, 64, 48, True)
    assert info.duration_s == pytest.approx(1.0, abs=0.1)


def test_probe_of_a_webm_counts_frames_from_its_duration(tmp_path):
    make_clip(tmp_path / "a.webm", frames=8)
    info = probe_file(tmp_path / "a.webm")
    assert (info.kind, info.frames, info.audio) == ("webm", 8, True)


def test_probe_refuses_garbage_and_a_still_gif(tmp_path):
    with pytest.raises(UnreadableVideo):
        probe(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 200, timeout_s=20, memory_bytes=1024 * MB)
    Image.new("RGB", (8, 8)).save(tmp_path / "still.gif")
    with pytest.raises(UnsupportedImageFormat, match="still"):
        probe((tmp_path / "still.gif").read_bytes(), timeout_s=20, memory_bytes=1024 * MB)


def test_probe_past_its_memory_is_refused_and_the_caller_lives(tmp_path):
    data = make_clip(tmp_path / "a.mp4")
    with pytest.raises(ProbeRefused):
        probe(data, timeout_s=20, memory_bytes=16 * MB)  # FFmpeg alone needs more to load


def test_animated_gif_is_a_clip(tmp_path):
    data = make_gif(tmp_path / "a.gif", frames=4)
    assert clip_kind(data) == "gif"
    info = probe_file(tmp_path / "a.gif")
    assert (info.frames, info.audio, info.fps) == (4, False, Fraction(10))
    assert len(list(iter_frames(tmp_path / "a.gif", info, max_pixels=10**6))) == 4


def test_frames_come_upright(tmp_path):
    make_clip(tmp_path / "turned.mp4", rotation=90)
    info = probe_file(tmp_path / "turned.mp4")
    first = next(iter_frames(tmp_path / "turned.mp4", info, max_pixels=10**6))
    assert first.size == (48, 64)  # a quarter turn
    green = np.asarray(first)[..., 1] > 150
    rows, cols = np.nonzero(green)
    # Turned counterclockwise, as the display matrix says: the top-left corner lands at the bottom-left.
    assert rows.mean() > first.height / 2 and cols.mean() < first.width / 2


def test_more_frames_than_the_headers_say_is_a_lie(tmp_path):
    make_clip(tmp_path / "a.mp4", frames=8)
    info = probe_file(tmp_path / "a.mp4")
    lying = info.__class__(**{**info.to_dict(), "frames": 3})
    with pytest.raises(VideoHeadersLied):
        list(iter_frames(tmp_path / "a.mp4", lying, max_pixels=10**6))
    with pytest.raises(VideoHeadersLied):
        list(iter_frames(tmp_path / "a.mp4", info, max_pixels=1000))
    with pytest.raises(UnreadableVideo):  # far larger: FFmpeg refuses it before allocating the frame
        list(iter_frames(tmp_path / "a.mp4", info, max_pixels=100))


@pytest.mark.parametrize("format", ["mp4", "webm"])
def test_encoded_clip_keeps_the_sound_and_the_record(tmp_path, format):
    source = tmp_path / f"in.{format}"
    make_clip(source, frames=8, fps=8)
    frames = [Image.fromarray(np.full((47, 63, 3), i * 30, np.uint8)) for i in range(8)]  # odd sides
    out = tmp_path / f"out.{format}"
    record = {"params": {"steps": 3}, "frames": 8}
    assert encode_clip(frames, out, rate=Fraction(8), format=format, sound_from=source, record=record) == 8
    decoded = read_frames(out)
    assert len(decoded) == 8 and decoded[0].size == (62, 46)
    assert read_record(out) == record
    assert sound_seconds(out) == pytest.approx(1.0, abs=0.1)
    assert tone_strength(out) > 0.8  # the tone, re-encoded


def test_fewer_frames_cut_the_sound(tmp_path):
    source = tmp_path / "in.mp4"
    make_clip(source, frames=8, fps=8)
    frames = [Image.new("RGB", (64, 48))] * 4
    encode_clip(frames, tmp_path / "out.mp4", rate=Fraction(8), sound_from=source)
    assert sound_seconds(tmp_path / "out.mp4") == pytest.approx(0.5, abs=0.06)


def test_a_clips_time_limit_grows_with_its_frames():
    from nst_shared.params import TransferParams
    from nst_shared.queueing import clip_frames, job_timeout_s
    from nst_shared.settings import Settings

    settings, params = Settings(), TransferParams(max_size=256, steps=100)
    picture = job_timeout_s(settings, params)
    limits = [job_timeout_s(settings, params, frames=n) for n in (1, 10, 100)]
    assert limits[0] == picture and picture < limits[1] < limits[2]
    assert clip_frames('{"video": {"frames": 12}}') == 12 and clip_frames(None) == 0
