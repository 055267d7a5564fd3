"""The engine's processes restart themselves once with the malloc settings glibc reads at start."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from nst_shared.allocator import ENGINE_MALLOC_ENV, with_engine_malloc

SHOW = (
    "from nst_shared.allocator import restart_with_engine_malloc; restart_with_engine_malloc(); "
    f"import os, json; print(json.dumps({{k: os.environ.get(k) for k in {sorted(ENGINE_MALLOC_ENV)!r}}}))"
)


def run(env: dict[str, str]) -> dict:
    out = subprocess.run([sys.executable, "-c", SHOW], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_restart_with_engine_malloc_sets_the_variables_once():
    plain = {k: v for k, v in os.environ.items() if k not in ENGINE_MALLOC_ENV}
    assert run(plain) == ENGINE_MALLOC_ENV


def test_restart_with_engine_malloc_keeps_what_the_operator_set():
    env = {**os.environ, **ENGINE_MALLOC_ENV, "GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}
    assert run(env)["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=0"
    assert with_engine_malloc({"GLIBC_TUNABLES": "x"})["GLIBC_TUNABLES"] == "x"
