from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from nst_core.progress import StopTransfer
from nst_shared.errors import DeviceOutOfMemory, ImageTooSmall, InvalidParameter
from nst_shared.params import TransferParams
from nst_shared.schedule import scale_sizes, split_steps
from tests.conftest import ROOT
from tests.nst_core.conftest import picture

SMALL = TransferParams(max_size=64, steps=8, scales=1)


def test_stylize_calls_back_exactly_once_per_step(engine):
    seen = []
    result = engine.stylize(picture(80, 60), [picture(64, 64, 1)], SMALL, callback=seen.append)
    assert [p.step for p in seen] == list(range(1, 9)) and all(p.steps == 8 for p in seen)
    assert result.steps_done == 8 and not result.stopped and result.image.size == (64, 48)


def test_stylize_multiscale_counts_steps_over_all_scales(engine):
    seen = []
    params = SMALL.replace(max_size=96, steps=9, scales=3, min_scale_size=64)
    engine.stylize(picture(96, 96), [picture(64, 64, 1)], params, callback=seen.append)
    assert [p.step for p in seen] == list(range(1, 10))
    assert [p.scale for p in seen] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert seen[0].width < seen[-1].width == 96


def test_stylize_loss_falls(engine):
    seen = []
    engine.stylize(picture(64, 64), [picture(64, 64, 2)], SMALL.replace(steps=15), callback=seen.append)
    assert seen[-1].total_loss < 0.5 * max(p.total_loss for p in seen[:3])


def test_stylize_stops_within_one_step_and_returns_image(engine):
    def stop_at_three(progress):
        if progress.step == 3:
            raise StopTransfer()

    result = engine.stylize(picture(64, 64), [picture(64, 64, 1)], SMALL.replace(steps=50), callback=stop_at_three)
    assert result.stopped and result.steps_done == 3 and result.image.size == (64, 64)


def test_stylize_same_seed_same_image(engine):
    params = SMALL.replace(init="noise", seed=7, steps=4)
    a = engine.stylize(picture(64, 64), [picture(64, 64, 1)], params).image
    b = engine.stylize(picture(64, 64), [picture(64, 64, 1)], params).image
    c = engine.stylize(picture(64, 64), [picture(64, 64, 1)], params.replace(seed=8)).image
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))


def test_stylize_keeps_style_aspect_ratio(engine):
    engine._style_cache.clear()
    engine.stylize(picture(64, 64), [picture(120, 40, 3)], SMALL.replace(steps=1, style_scale=1.5))
    sizes = [key[2] for key in engine._style_cache]  # the calibration's probe and the run's one scale
    assert set(sizes) == {(96, 32)}  # 64 px * 1.5 on the long side, 3:1 kept (not stretched to 64x64)


def test_stylize_caches_style_grams(engine):
    engine._style_cache.clear()
    style = picture(64, 64, 4)
    engine.stylize(picture(64, 64), [style], SMALL.replace(steps=1))
    engine.stylize(picture(64, 64, 9), [style], SMALL.replace(steps=1))
    assert len(engine._style_cache) == 1


def test_stylize_blend_of_one_equals_single_style(engine):
    params = SMALL.replace(steps=3, seed=1)
    single = engine.stylize(picture(64, 64), [picture(64, 64, 1)], params).image
    blended = engine.stylize(
        picture(64, 64), [picture(64, 64, 1), picture(64, 64, 5)], params.replace(style_blend=(1.0, 0.0))
    ).image
    mixed = engine.stylize(
        picture(64, 64), [picture(64, 64, 1), picture(64, 64, 5)], params.replace(style_blend=(0.5, 0.5))
    ).image
    assert np.array_equal(np.asarray(single), np.asarray(blended))
    assert not np.array_equal(np.asarray(single), np.asarray(mixed))


def test_stylize_luminance_keeps_content_chroma(engine):
    content = picture(64, 64, 6)
    result = engine.stylize(content, [picture(64, 64, 1)], SMALL.replace(steps=5, color_mode="luminance")).image
    plain = engine.stylize(content, [picture(64, 64, 1)], SMALL.replace(steps=5)).image
    chroma = lambda im: np.asarray(im.convert("YCbCr"), dtype=float)[..., 1:]  # noqa: E731
    assert np.abs(chroma(result) - chroma(content)).mean() < 1.5
    assert np.abs(chroma(plain) - chroma(content)).mean() > np.abs(chroma(result) - chroma(content)).mean()


def test_stylize_refuses_bad_inputs(engine):
    with pytest.raises(ImageTooSmall):
        engine.stylize(picture(400, 20), [picture(64, 64)], SMALL)
    with pytest.raises(InvalidParameter) as blend:
        engine.stylize(picture(64, 64), [picture(64, 64)], SMALL.replace(style_blend=(0.5, 0.5)))
    assert blend.value.field == "style_blend"
    with pytest.raises(InvalidParameter):
        engine.stylize(picture(64, 64), [], SMALL)


def test_scale_sizes_and_split_steps():
    assert scale_sizes((384, 256), scales=3, min_size=192) == [(192, 128), (272, 181), (384, 256)]
    assert scale_sizes((64, 64), scales=3, min_size=192) == [(64, 64)]
    assert split_steps(10, [1, 1, 1]) == [4, 3, 3] and sum(split_steps(120, [1, 1, 1])) == 120


def test_gram_matrix_matches_plain_autograd():
    import torch

    from nst_core.losses import gram_matrix

    for memory_format in (torch.contiguous_format, torch.channels_last):
        x = torch.rand(1, 8, 5, 7, dtype=torch.float64).contiguous(memory_format=memory_format).requires_grad_()
        weight = torch.rand(8, 8, dtype=torch.float64)
        (gram_matrix(x) * weight).sum().backward()
        flat = x.detach().reshape(1, 8, 35).requires_grad_()
        ((flat @ flat.transpose(1, 2)) / (8 * 35) * weight).sum().backward()
        assert torch.allclose(x.grad.reshape(1, 8, 35), flat.grad)
        assert torch.allclose(gram_matrix(x), (flat @ flat.transpose(1, 2)) / (8 * 35))


def test_stylize_out_of_host_memory_raises_device_out_of_memory():
    # A real allocation refused by the OS: the process's address space is capped after the model is built,
    # so a 1536 px run cannot get its activations. The engine says so with its own error and stays usable.
    code = """
import resource
from PIL import Image
from nst_core.transfer import StyleTransfer
from nst_shared.errors import DeviceOutOfMemory
from nst_shared.params import TransferParams
from nst_shared.schedule import scale_sizes, split_steps
engine = StyleTransfer(device="cpu")
size_kb = int(next(l for l in open("/proc/self/status") if l.startswith("VmSize")).split()[1])
limit = (size_kb + 400_000) * 1024
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
picture = Image.new("RGB", (1536, 1024), (120, 80, 40))
try:
    engine.stylize(picture, [picture], TransferParams(max_size=1536, steps=2, scales=1))
except DeviceOutOfMemory as exc:
    print("out_of_memory", exc.code)
small = Image.new("RGB", (64, 48), (120, 80, 40))
print("after", engine.stylize(small, [small], TransferParams(max_size=64, steps=1, scales=1)).image.size)
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "out_of_memory out_of_memory" in out.stdout, out.stdout + out.stderr[-2000:]
    assert "after (64, 48)" in out.stdout, out.stderr[-2000:]


@pytest.mark.parametrize(
    "message", ["cuDNN error: CUDNN_STATUS_ALLOC_FAILED", "CUBLAS_STATUS_ALLOC_FAILED when calling"]
)
def test_stylize_cudnn_and_cublas_allocation_failures_are_out_of_memory(engine, monkeypatch, message):
    # On a full card cuDNN and cuBLAS report a refused workspace as a plain RuntimeError, not OutOfMemoryError.
    def refusing_net(*args, **kwargs):
        raise RuntimeError(message)

    monkeypatch.setattr(engine, "net", refusing_net)
    with pytest.raises(DeviceOutOfMemory):
        engine.stylize(picture(64, 48), [picture(64, 64, 1)], TransferParams(max_size=64, steps=2, scales=1))


HOST_READS = ("item", "tolist", "__float__", "__bool__", "__int__", "__index__", "numpy", "cpu")


def test_a_step_reads_the_device_once(engine, monkeypatch):
    """Each host read waits for the device: one a step, for the progress event; the step's decisions stay on it."""
    import torch

    reads: list[str] = []
    for name in HOST_READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            reads.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    per_step: list[list[str]] = []

    def on_progress(progress) -> None:
        per_step.append(list(reads))
        reads.clear()

    engine.stylize(picture(64, 64), [picture(64, 64, 2)], SMALL.replace(steps=12), callback=on_progress)
    monkeypatch.undo()
    assert len(per_step) == 12
    # The first report also follows the scale's set-up; every later one follows exactly one step.
    assert all(names == ["tolist"] for names in per_step[1:]), per_step
