"""The real engine on a GPU with less memory: for the out-of-memory test on a card far larger than its jobs."""

from __future__ import annotations

import os
from typing import Any

from nst_core.transfer import StyleTransfer

CAP_VARIABLE = "GPU_TEST_MEMORY_CAP_MB"


class MemoryCappedStyleTransfer(StyleTransfer):
    """StyleTransfer whose process may take at most GPU_TEST_MEMORY_CAP_MB of CUDA memory (the caching
    allocator refuses more, raising torch.OutOfMemoryError as a full card would). No cap off CUDA."""

    def __init__(self, **kwargs: Any) -> None:
        import torch

        super().__init__(**kwargs)
        cap_mb = int(os.environ.get(CAP_VARIABLE, "0"))
        if cap_mb and self.device.type == "cuda":
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            total = torch.cuda.get_device_properties(index).total_memory
            torch.cuda.set_per_process_memory_fraction(min(1.0, cap_mb * 2**20 / total), index)
