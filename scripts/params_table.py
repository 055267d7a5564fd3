"""Writes the README's parameter table from the parameter model (tests/test_readme.py checks it is current).

Run: .venv/bin/python scripts/params_table.py
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from nst_cli.options import flag_name
from nst_shared.params import ENGINE_ONLY, form_schema, param_fields

README = Path(__file__).resolve().parent.parent / "README.md"
HEADER = "| parameter (API form field) | `nst run` flag | default | range | what it does |\n|---|---|---|---|---|\n"


def _default(value: Any) -> str:
    if isinstance(value, tuple) and value and isinstance(value[0], float):
        return ", ".join(f"{v:g}" for v in value)
    return ",".join(value) if isinstance(value, tuple) else str(value)


def table() -> str:
    """The table, one row per parameter, in the model's order."""
    rows = []
    for name, info in param_fields().items():
        schema = form_schema().get(name, {})
        low, high = schema.get("minimum"), schema.get("maximum")
        limits = f"{low:g} .. {high:g}" if high is not None else ""
        if name in ENGINE_ONLY:
            label, flag = f"`{name}` (engine only)", ""
        else:
            label = f"`{name}`"
            # `nst run` writes previews as files; `nst submit` has --preview-every.
            flag = "`--save-every (writes files)`" if name == "preview_every" else f"`{flag_name(name)}`"
        rows.append(f"| {label} | {flag} | `{_default(info.default)}` | {limits} | {info.description} |\n")
    return HEADER + "".join(rows)


def main() -> None:
    text = README.read_text()
    pattern = re.escape(HEADER) + r"(\|.*\|\n)*"
    README.write_text(re.sub(pattern, lambda _: table(), text, count=1))


if __name__ == "__main__":
    main()
