"""Fake engines for tests that exercise the service, not the painting: named for what they do.

A worker builds one from `NST_ENGINE` ("tests.engines:InstantEngine"); they follow the engine's contract
(device, device_name, precision, stylize with a progress callback that may raise StopTransfer) without torch.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from nst_core.progress import Progress, StopTransfer
from nst_shared.device_budget import DeviceMemory
from nst_shared.images import fit_size, resize
from nst_shared.memory import default_budget_bytes


@dataclass(frozen=True)
class _Device:
    type: str = "cpu"


@dataclass(frozen=True)
class FakeResult:
    image: Image.Image
    steps_done: int
    stopped: bool
    elapsed_s: float
    total_loss: float
    style_factor: float = 1.0


STEERED_FACTOR = 0.5  # what a fake run reports as its steered style factor (nst_core/calibration.py)


class InstantEngine:
    """Returns the content image resized, reporting every step at once: a job costs milliseconds."""

    step_s = 0.0

    def __init__(
        self,
        *,
        device: str = "cpu",
        precision: str = "auto",
        memory_budget_bytes: int | None = None,
        cudnn_benchmark: str = "all",
    ) -> None:
        self.device = _Device()
        self.device_name = "cpu"
        self.precision = "fp32"
        self.memory_budget_bytes = memory_budget_bytes or default_budget_bytes("cpu")

    def stylize(
        self,
        content: Image.Image,
        styles: Sequence[Image.Image],
        params: Any,
        *,
        style_masks: Sequence[Image.Image] | None = None,
        callback: Callable[[Progress], None] | None = None,
        init_image: Image.Image | None = None,
        temporal: Any = None,
        style_factor: float | None = None,
    ) -> FakeResult:
        """A clip's frame (nst_core/video.py) passes `init_image`, `temporal` and `style_factor`: the frame is
        returned all the same."""
        started = time.monotonic()
        image = resize(content, fit_size(*content.size, params.max_size))
        done, stopped = 0, False
        for step in range(1, params.steps + 1):
            time.sleep(self.step_s)
            done = step
            preview = image if params.preview_every and step % params.preview_every == 0 else None
            try:
                if callback:
                    callback(
                        Progress(
                            step=step,
                            steps=params.steps,
                            scale=1,
                            scales=1,
                            width=image.width,
                            height=image.height,
                            content_loss=1.0,
                            style_loss=1.0,
                            tv_loss=0.0,
                            total_loss=2.0,
                            elapsed_s=time.monotonic() - started,
                            preview=preview,
                        )
                    )
            except StopTransfer:
                stopped = True
                break
        factor = STEERED_FACTOR if style_factor is None else style_factor  # a clip's later frames reuse the first's
        return FakeResult(image, done, stopped, time.monotonic() - started, 2.0, factor)


class SharedGpuEngine(InstantEngine):
    """An InstantEngine that says it runs on a GPU (NST_TEST_GPU_ID) with NST_TEST_GPU_FREE_BYTES free: the
    shared budget of workers on one GPU, on a machine without one. The free memory never changes, as on a GPU
    where the workers have not allocated yet: what they reserve must be counted by the reservations alone."""

    @staticmethod
    def device_memory(device: str = "auto") -> DeviceMemory:
        free = int(os.environ["NST_TEST_GPU_FREE_BYTES"])
        return DeviceMemory(os.environ["NST_TEST_GPU_ID"], free, free)


class SlowEngine(InstantEngine):
    """Takes 0.1 s a step: for jobs that must still be running when the test acts."""

    step_s = 0.1


class MemoryHogEngine(InstantEngine):
    """Asks for far more memory than the machine has, as a run too large for its device would."""

    def stylize(self, *args: Any, **kwargs: Any) -> FakeResult:
        hog = bytearray(2**44)  # 16 TiB: refused at once, raising MemoryError
        return hog  # type: ignore[return-value]


class CudaDefaultsEngine(InstantEngine):
    """Says it runs on CUDA, so its worker fills in the GPU's defaults (nst_shared/params.py::DEVICE_DEFAULTS)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.device = _Device("cuda")
