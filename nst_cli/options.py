"""Command-line flags built from TransferParams, so `nst run` and `nst submit` share one definition."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from nst_shared.params import INITS, TransferParams, param_fields

# Flags with a spelling of the seed project too (--max_size, --content_weight, --style_weight).
SEED_SPELLINGS = {"max_size", "content_weight", "style_weight"}
FLAG_NAMES = {"early_stop_tolerance": "--early-stop"}
NOT_FLAGS = {"style_blend", "content_layers", "style_layers", "style_layer_weights", "preview_every"}


def floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def add_param_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per parameter, with its help, bounds and default from `TransferParams`."""
    for field in param_fields():
        if field.name in NOT_FLAGS:
            continue
        flags = [FLAG_NAMES.get(field.name, f"--{field.name.replace('_', '-')}")]
        if field.name in SEED_SPELLINGS:
            flags.append(f"--{field.name}")
        meta = field.metadata
        bounds = ", ".join(f"{k} {meta[k]:g}" for k in ("ge", "gt", "le") if meta.get(k) is not None)
        help_text = meta["help"] + (f" ({bounds})" if bounds else "") + " (default: %(default)s)"
        if field.type == "bool":
            parser.add_argument(*flags, dest=field.name, action="store_true", help=meta["help"])
        elif field.name == "init":
            parser.add_argument(*flags, dest=field.name, choices=INITS, default=field.default, help=help_text)
        else:
            kind = float if "float" in str(field.type) else int
            parser.add_argument(*flags, dest=field.name, type=kind, default=field.default, help=help_text)
    parser.add_argument("--style-blend", type=floats, default=None,
                        help="weights of the style images, e.g. 0.7,0.3 (default: equal)")


def params_from_args(args: argparse.Namespace, **overrides: Any) -> TransferParams:
    """The parameters the flags ask for; out-of-range values raise ValueError naming the flag."""
    names = {f.name for f in dataclasses.fields(TransferParams)}
    values: dict[str, Any] = {k: v for k, v in vars(args).items() if k in names and v is not None}
    params = TransferParams(**{**values, **overrides})
    for field in param_fields():
        meta, value = field.metadata, getattr(params, field.name)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        low, high = meta.get("ge"), meta.get("le")
        if (low is not None and value < low) or (high is not None and value > high):
            flag = FLAG_NAMES.get(field.name, f"--{field.name.replace('_', '-')}")
            raise ValueError(f"{flag} must be within {low:g}..{high:g}, got {value:g}")
    return params


def explicit_flags(argv: list[str]) -> frozenset[str]:
    """The parameters whose flags appear in `argv` (so device defaults leave them alone)."""
    given = set()
    for field in param_fields():
        flags = {FLAG_NAMES.get(field.name, f"--{field.name.replace('_', '-')}"), f"--{field.name}"}
        if any(token in flags or token.split("=", 1)[0] in flags for token in argv):
            given.add(field.name)
    return frozenset(given)
