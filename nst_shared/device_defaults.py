"""A device's own defaults (params.DEVICE_DEFAULTS) applied where the job runs, never past the deployment's caps.

The API checks a job with the model's defaults, which are a CPU's; only the worker knows its device (CPU and GPU
workers may share a queue), so the worker fills in its device's defaults and checks them against the same caps
(NST_MAX_SIZE_PX, NST_MAX_STEPS, NST_MAX_STEP_MEGAPIXELS) and its own memory plan before it runs them.
"""

from __future__ import annotations

from nst_shared.images import fit_size
from nst_shared.memory import plan_memory
from nst_shared.params import DEVICE_DEFAULTS, TransferParams
from nst_shared.schedule import params_cost
from nst_shared.settings import Settings


def param_caps(settings: Settings) -> dict[str, int]:
    """The largest value of each capped parameter that this deployment accepts."""
    return {"max_size": settings.max_size_px, "steps": settings.max_steps}


def for_device_within_caps(
    params: TransferParams,
    device_type: str,
    *,
    explicit: set[str] | frozenset[str],
    settings: Settings,
    content_size: tuple[int, int],
    precision: str,
    budget_bytes: int,
) -> TransferParams:
    """`params` with `device_type`'s defaults for the fields not in `explicit`, each lowered to its cap; `params`
    as the API checked them when the result would still cost more than the step budget or the worker's memory."""
    caps = param_caps(settings)
    changes = {
        name: min(value, caps.get(name, value))
        for name, value in DEVICE_DEFAULTS.get(device_type, {}).items()
        if name not in explicit
    }
    if not changes:
        return params
    candidate = params.replace(**changes)
    width, height = fit_size(*content_size, candidate.max_size)
    if (
        params_cost(candidate, content_size) > settings.max_step_megapixels
        or not plan_memory(width, height, precision=precision, budget_bytes=budget_bytes).fits
    ):
        return params
    return candidate
