"""This deployment's caps on top of the parameter model's own bounds (NST_MAX_SIZE_PX, NST_MAX_STEPS,
NST_MAX_STYLES, NST_MAX_STEP_MEGAPIXELS): the one place they are applied, and published to the docs and page."""

from __future__ import annotations

from nst_shared.params import TransferParams
from nst_shared.settings import Settings
from service.errors import ApiError

UNITS = {"max_size": " px", "steps": ""}


def param_caps(settings: Settings) -> dict[str, int]:
    """The largest value of each capped parameter that this deployment accepts."""
    return {"max_size": settings.max_size_px, "steps": settings.max_steps}


def check_caps(params: TransferParams, *, styles: int, settings: Settings) -> None:
    """422 when a job asks for more than this deployment allows: more style images or a capped parameter
    over its cap (the model has already checked its own bounds)."""
    if styles > settings.max_styles:
        raise ApiError(422, "too_many_styles", f"style: at most {settings.max_styles} style images", field="style")
    for name, cap in param_caps(settings).items():
        if getattr(params, name) > cap:
            raise ApiError(422, "invalid_parameter", f"{name}: at most {cap}{UNITS[name]} on this service",
                           field=name)


def check_budget(steps: int, size: tuple[int, int], settings: Settings) -> None:
    """422 when steps x output megapixels (what a job costs, roughly) is over NST_MAX_STEP_MEGAPIXELS."""
    megapixels = size[0] * size[1] / 1e6
    cost = steps * megapixels
    if cost > settings.max_step_megapixels:
        raise ApiError(422, "over_budget", f"steps x megapixels: {steps} steps x {megapixels:.3f} MP "
                       f"({size[0]}x{size[1]}) = {cost:.1f}, over this service's budget of "
                       f"{settings.max_step_megapixels:g}; lower steps or max_size", field="steps")
