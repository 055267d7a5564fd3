"""Reading docker-compose.yml, its CPU override and the Dockerfiles the way Docker would, without Docker."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import ROOT

COMPOSE = ROOT / "docker-compose.yml"
CPU_OVERRIDE = ROOT / "docker-compose.cpu.yml"


class _Reset:
    """Compose's `!reset` tag: the override empties the value instead of merging into it."""

    def __init__(self, value: Any) -> None:
        self.value = value


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!reset", lambda loader, node: _Reset(
    loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode) else None))


def load(path: Path) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 (a SafeLoader plus one tag)


def merged(*paths: Path) -> dict[str, Any]:
    """`docker compose -f a -f b`: mappings merge, an override's scalars and lists replace, `!reset` empties."""
    result: dict[str, Any] = {}
    for path in paths:
        result = _merge(result, load(path))
    return result


def _merge(base: Any, override: Any) -> Any:
    if isinstance(override, _Reset):
        return override.value
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = _merge(base.get(key), value)
        return out
    return override


_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def interpolate(value: str, variables: dict[str, str]) -> str:
    """`${NAME:-default}`, `${NAME}` and `$$` as compose resolves them (unset and empty take the default)."""
    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        return variables.get(match.group(1)) or (match.group(2) or "")
    return _VARIABLE.sub(replace, value)


def environment(service: dict[str, Any], variables: dict[str, str] | None = None) -> dict[str, str]:
    """A service's environment with interpolation done (variables: what the shell or --env-file gives)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: interpolate(str(value), variables or {}) for key, value in env.items()}


def read_env_file(path: Path) -> dict[str, str]:
    lines = [line.strip() for line in path.read_text().splitlines()]
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


@dataclass
class Dockerfile:
    """A Dockerfile's instructions, continuation lines joined: [(INSTRUCTION, arguments text)]."""

    path: Path
    instructions: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> "Dockerfile":
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
        import json

        return json.loads(self.args(instruction)[-1])

    def python_checks(self) -> list[str]:
        """The code of each `python -c "..."` in RUN steps (the build-time checks)."""
        found = []
        for text in self.args("RUN"):
            lexer = shlex.shlex(text, posix=True, punctuation_chars=True)  # ;, && and | split, quotes kept
            lexer.whitespace_split = True
            tokens = list(lexer)
            found += [tokens[i + 2] for i in range(len(tokens) - 2) if tokens[i:i + 2] == ["python", "-c"]]
        return found
