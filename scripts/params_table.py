"""Writes the parameter table of docs/parameters.md from the parameter model (tests/test_docs.py checks it is
current).

Run: .venv/bin/python scripts/params_table.py
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nst_cli.options import flag_name
from nst_shared.params import ENGINE_ONLY, form_schema, param_fields

DOC = Path(__file__).resolve().parent.parent / "docs" / "parameters.md"
BEGIN = "<!-- the table below is written by scripts/params_table.py from nst_shared/params.py -->\n"
END = "<!-- end of the generated table -->\n"
HEADER = "| parameter (API form field) | `nst run` flag | default | range | what it does |\n|---|---|---|---|---|\n"


def _default(value: Any) -> str:
    if isinstance(value, tuple) and value and isinstance(value[0], float):
        return ", ".join(f"{v:g}" for v in value)
    return ",".join(value) if isinstance(value, tuple) else str(value)


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def table() -> str:
    """The table, one row per parameter, in the model's order."""
    rows = []
    for name, info in param_fields().items():
        schema = form_schema().get(name, {})
        low, high = schema.get("minimum"), schema.get("maximum")
        limits = f"{_number(low)} .. {_number(high)}" if high is not None else ""
        if name in ENGINE_ONLY:
            label, flag = f"`{name}` (engine only)", ""
        else:
            label = f"`{name}`"
            # `nst run` writes previews as files; `nst submit` has --preview-every.
            flag = "`--save-every (writes files)`" if name == "preview_every" else f"`{flag_name(name)}`"
        rows.append(f"| {label} | {flag} | `{_default(info.default)}` | {limits} | {info.description} |\n")
    return HEADER + "".join(rows)


def render(text: str) -> str:
    """`text` with the current table between its markers."""
    head, rest = text.split(BEGIN, 1)
    return head + BEGIN + table() + END + rest.split(END, 1)[1]


def main() -> None:
    DOC.write_text(render(DOC.read_text()))


if __name__ == "__main__":
    main()
