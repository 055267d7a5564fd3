"""The README documents every parameter and every setting, and shows the command CI runs."""

import importlib.util
from pathlib import Path

from nst_shared.params import param_fields
from nst_shared.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_documents_every_parameter_and_setting():
    for name in param_fields():
        assert f"| `{name}`" in README, name
    for name in Settings.model_fields:
        assert f"`NST_{name.upper()}`" in README, name


def test_ci_runs_the_readme_test_command():
    command = (ROOT / ".ci/run").read_text().strip().splitlines()[-1]
    assert command in README


def test_readme_parameter_table_is_current():
    spec = importlib.util.spec_from_file_location("params_table", ROOT / "scripts" / "params_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.table() in README, "run: .venv/bin/python scripts/params_table.py"
