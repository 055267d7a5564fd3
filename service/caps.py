"""This deployment's caps on top of the parameter model's own bounds (NST_MAX_SIZE_PX, NST_MAX_STEPS,
NST_MAX_STYLES, NST_MAX_STEP_MEGAPIXELS): the one place they are applied, and published to the docs and page."""

from __future__ import annotations

from nst_shared.capacity import WorkerMemory, best_fit
from nst_shared.device_defaults import param_caps
from nst_shared.images import fit_size
from nst_shared.job_options import JobOptions
from nst_shared.memory import format_bytes
from nst_shared.params import TransferParams
from nst_shared.schedule import params_cost
from nst_shared.settings import Settings
from service.errors import ApiError

UNITS = {"max_size": " px", "steps": ""}


def check_caps(params: TransferParams, *, styles: int, settings: Settings) -> None:
    """422 when a job asks for more than this deployment allows: more style images or a capped parameter
    over its cap (the model has already checked its own bounds)."""
    if styles > settings.max_styles:
        raise ApiError(422, "too_many_styles", f"style: at most {settings.max_styles} style images", field="style")
    for name, cap in param_caps(settings).items():
        if getattr(params, name) > cap:
            raise ApiError(422, "invalid_parameter", f"{name}: at most {cap}{UNITS[name]} on this service", field=name)


def check_options(options: JobOptions, *, settings: Settings) -> None:
    """422 when a job asks to be kept longer than this deployment keeps any (NST_RESULT_TTL_S)."""
    if options.ttl_s is not None and options.ttl_s > settings.result_ttl_s:
        raise ApiError(
            422, "invalid_parameter", f"ttl_s: at most {settings.result_ttl_s} s on this service", field="ttl_s"
        )


def check_budget(params: TransferParams, content_size: tuple[int, int], settings: Settings) -> None:
    """422 when the job's schedule costs more than NST_MAX_STEP_MEGAPIXELS: the sum over its scales of steps x
    megapixels (more for a scale evaluated in blocks: nst_shared/schedule.py)."""
    cost = params_cost(params, content_size)
    if cost > settings.max_step_megapixels:
        width, height = fit_size(*content_size, params.max_size)
        raise ApiError(
            422,
            "over_budget",
            f"steps x megapixels over the schedule's scales: {params.steps} steps up "
            f"to {width}x{height} cost {cost:.1f}, over this service's budget of "
            f"{settings.max_step_megapixels:g}; lower steps or max_size",
            field="steps",
        )


def check_memory(size: tuple[int, int], offers: list[WorkerMemory]) -> None:
    """422 when a `size` output fits no worker's memory (nothing to check without offers: no worker alive and
    NST_WORKER_MEMORY_GB unset)."""
    fit = best_fit(*size, offers)
    if fit is not None and not fit[1].fits:
        offer, plan = fit
        raise ApiError(
            422,
            "too_large_for_workers",
            f"a {size[0]}x{size[1]} picture needs about "
            f"{format_bytes(plan.peak_bytes)}; the largest worker offers "
            f"{format_bytes(offer.budget_bytes)} ({offer.device}, {offer.precision}); lower max_size",
            field="max_size",
        )
