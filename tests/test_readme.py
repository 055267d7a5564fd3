"""The README documents every parameter and every setting, and shows the command CI runs."""

from pathlib import Path

from nst_shared.params import param_fields
from nst_shared.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_documents_every_parameter_and_setting():
    for field in param_fields():
        assert f"| `{field.name}`" in README, field.name
    for name in Settings.model_fields:
        assert f"`NST_{name.upper()}`" in README, name


def test_ci_runs_the_readme_test_command():
    command = (ROOT / ".ci/run").read_text().strip().splitlines()[-1]
    assert command in README
