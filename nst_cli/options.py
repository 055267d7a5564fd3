"""Command-line flags built from TransferParams, so `nst run` and `nst submit` share one definition.

The flags hand their text to the model, which parses and checks it: no bound or choice is written here.
"""

from __future__ import annotations

import argparse
from typing import Any, Literal, get_args, get_origin

from pydantic import ValidationError

from nst_shared.params import TransferParams, api_fields, first_error, form_schema

# Flags with a spelling of the seed project too (--max_size, --content_weight, --style_weight).
SEED_SPELLINGS = {"max_size", "content_weight", "style_weight"}
FLAG_NAMES = {"early_stop_tolerance": "--early-stop"}
# Previews are files for `nst run` (--save-every) and events for `nst submit` (--preview-every).
NOT_FLAGS = {"preview_every"}
METAVARS = {"integer": "N", "number": "X", "string": "W,W.."}
STYLE_MASK_HELP = (
    "mask image of the style in the same place (repeat: one per style, or none): white paints that "
    "style, black keeps it out, grey blends; where no mask is white the photo stays"
)


def flag_name(field: str) -> str:
    return FLAG_NAMES.get(field, f"--{field.replace('_', '-')}")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e10 else f"{value:g}"


def help_text(name: str) -> str:
    """The parameter's description with its range and default, as a flag's help shows them."""
    schema = form_schema()[name]
    low, high = schema.get("minimum"), schema.get("maximum")
    text: str = schema["description"]
    if low is not None and high is not None:
        text += f" ({_number(low)}..{_number(high)})"
    return (text + f" (default: {TransferParams.model_fields[name].default})").replace("%", "%%")


def add_param_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per API parameter, with its description, range and default from `TransferParams`."""
    for name, info in api_fields().items():
        if name in NOT_FLAGS:
            continue
        flags = [flag_name(name)] + ([f"--{name}"] if name in SEED_SPELLINGS else [])
        # default None: a flag not given is left to the model (and to the worker's device defaults).
        if form_schema()[name]["type"] == "boolean":
            parser.add_argument(*flags, dest=name, action="store_true", default=None, help=help_text(name))
        elif get_origin(info.annotation) is Literal:
            parser.add_argument(
                *flags, dest=name, choices=get_args(info.annotation), default=None, help=help_text(name)
            )
        else:
            parser.add_argument(
                *flags, dest=name, default=None, metavar=METAVARS[form_schema()[name]["type"]], help=help_text(name)
            )


def params_from_args(args: argparse.Namespace, **overrides: Any) -> TransferParams:
    """The parameters the flags ask for; those given are the model's `model_fields_set` (the explicit ones).
    A value the model refuses raises ValueError naming the flag."""
    values = {name: getattr(args, name) for name in api_fields() if getattr(args, name, None) is not None}
    try:
        return TransferParams.model_validate({**values, **overrides})
    except ValidationError as exc:
        field, message = first_error(exc)
        raise ValueError(f"{flag_name(field)}: {message}" if field else message) from None
