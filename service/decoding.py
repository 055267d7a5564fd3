"""Checking uploaded images in the API with bounded memory: cheap checks (nst_shared.images.check_image), and
at most NST_MAX_DECODING_PIXELS pixels decoded at once in this process; more uploads wait their turn."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator

from nst_shared.images import check_image
from nst_shared.settings import Settings


class PixelBudget:
    """Lets decodes of at most `capacity_px` pixels run at once; one larger than that runs alone."""

    def __init__(self, capacity_px: int) -> None:
        self.capacity_px = capacity_px
        self._free_px = capacity_px
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        need = min(pixels, self.capacity_px)
        with self._changed:
            self._changed.wait_for(lambda: self._free_px >= need)
            self._free_px -= need
        try:
            yield
        finally:
            with self._changed:
                self._free_px += need
                self._changed.notify_all()


@functools.cache
def pixel_budget(capacity_px: int) -> PixelBudget:
    """This process's budget (the request threads share it)."""
    return PixelBudget(capacity_px)


def check_upload(data: bytes, settings: Settings) -> tuple[int, int]:
    """The upright size of an uploaded image, once it passes every check `decode_image` makes."""
    return check_image(data, max_pixels=settings.max_image_pixels, hold=pixel_budget(settings.max_decoding_pixels).hold)
