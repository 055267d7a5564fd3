"""docs/client.md stays true: its Python blocks compile, and the five-line example runs against the service."""

from __future__ import annotations

import re
import subprocess
import sys

from PIL import Image

from tests.conftest import ROOT, make_image

DOC = (ROOT / "docs" / "client.md").read_text()
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", DOC, flags=re.S)


def test_docs_python_blocks_compile():
    assert len(PYTHON_BLOCKS) >= 3
    for block in PYTHON_BLOCKS:
        compile(block, "docs/client.md", "exec")


def test_docs_five_line_example_runs(service_url, tmp_path):
    example = PYTHON_BLOCKS[0]
    assert len(example.strip().splitlines()) <= 6 and "nst.download" in example
    (tmp_path / "photo.jpg").write_bytes(make_image(80, 60, seed=11, fmt="JPEG"))
    (tmp_path / "starry.jpg").write_bytes(make_image(64, 64, seed=12, fmt="JPEG"))
    code = example.replace("http://127.0.0.1:8000", service_url).replace("steps=120", "steps=3, max_size=64")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with Image.open(tmp_path / "out.png") as image:
        assert image.size == (64, 48)
