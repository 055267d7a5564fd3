"""The docs stay true: generated tables current, every parameter and setting documented, every relative link
resolving, and a README a newcomer reads in two minutes."""

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

from nst_shared.params import param_fields
from nst_shared.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
LINK = re.compile(r"\]\(([^)\s]+)\)|<img src=\"([^\"]+)\"")


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"(?ms)^```.*?^```", "", page.read_text())
    headings = re.findall(r"(?m)^#+ (.+)$", text)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("name, doc", [("params_table", "parameters.md"), ("settings_table", "settings.md")])
def test_generated_tables_are_current(name, doc):
    text = (ROOT / "docs" / doc).read_text()
    assert _script(name).render(text) == text, f"run: .venv/bin/python scripts/{name}.py"


def test_docs_document_every_parameter_and_setting():
    parameters = (ROOT / "docs" / "parameters.md").read_text()
    for name in param_fields():
        assert f"| `{name}`" in parameters, name
    settings = (ROOT / "docs" / "settings.md").read_text()
    for name in Settings.model_fields:
        assert f"| `NST_{name.upper()}` |" in settings, name


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda page: page.name)
def test_relative_links_resolve(page):
    text = re.sub(r"(?ms)^```.*?^```", "", page.read_text())
    for match in LINK.finditer(text):
        link = match.group(1) or match.group(2)
        if re.match(r"[a-z]+:", link):
            continue
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        assert target.exists(), f"{page.name}: {link}"
        if anchor and target.suffix == ".md":
            assert anchor in _anchors(target), f"{page.name}: {link}"


def test_readme_is_short():
    lines = README.read_text().splitlines()
    first_section = next(i for i, line in enumerate(lines) if line.startswith("## "))
    assert first_section <= 60, f"the first screen is {first_section} lines"
    assert len(lines) <= 150, f"the README is {len(lines)} lines"


def test_ci_runs_the_readme_test_command():
    command = (ROOT / ".ci/run").read_text().strip().splitlines()[-1]
    assert command in README.read_text()
