"""Writes the settings table of docs/settings.md from `nst_shared.settings.Settings` (tests/test_docs.py checks
it is current).

Run: .venv/bin/python scripts/settings_table.py
"""

from __future__ import annotations

from pathlib import Path

from nst_shared.settings import Settings

DOC = Path(__file__).resolve().parent.parent / "docs" / "settings.md"
BEGIN = "<!-- the table below is written by scripts/settings_table.py from nst_shared/settings.py -->\n"
END = "<!-- end of the generated table -->\n"
HEADER = "| variable | default | meaning |\n|---|---|---|\n"


def table() -> str:
    """The table, one row per setting, in the model's order."""
    rows = []
    for name, info in Settings.model_fields.items():
        default = info.get_default(call_default_factory=True)
        shown = f"`{default}`" if default not in ("", []) else "empty"
        rows.append(f"| `NST_{name.upper()}` | {shown} | {info.description} |\n")
    return HEADER + "".join(rows)


def render(text: str) -> str:
    """`text` with the current table between its markers."""
    head, rest = text.split(BEGIN, 1)
    return head + BEGIN + table() + END + rest.split(END, 1)[1]


def main() -> None:
    DOC.write_text(render(DOC.read_text()))


if __name__ == "__main__":
    main()
