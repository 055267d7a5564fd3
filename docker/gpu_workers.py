"""Writes a Compose override that runs one worker per GPU, each reserving only its own GPU.

Compose gives every replica of a scaled service the same device reservation (`--scale worker=4` puts all four
on one GPU), so each GPU gets a service of its own: `worker` on the first, `worker-gpu<N>` on the others, each
extending `worker` from docker-compose.yml. Usage, from the repository root:

    python3 docker/gpu_workers.py 8 > docker-compose.gpus.yml          # GPUs 0..7
    python3 docker/gpu_workers.py 0,2 > docker-compose.gpus.yml        # these GPUs only
    docker compose -f docker-compose.yml -f docker-compose.gpus.yml up --build -d
"""

from __future__ import annotations

import argparse
import sys


def gpu_ids(spec: str) -> list[str]:
    """'4' means GPUs 0..3; '0,2' means those ids (as `nvidia-smi -L` numbers them, or GPU UUIDs)."""
    if spec.isdigit():
        if int(spec) < 1:
            raise ValueError("at least one GPU")
        return [str(i) for i in range(int(spec))]
    ids = [part.strip() for part in spec.split(",") if part.strip()]
    if not ids or len(set(ids)) != len(ids):
        raise ValueError(f"GPU ids must be distinct and not empty: {spec!r}")
    return ids


def _reservation(gpu: str) -> list[str]:
    # !override: the list replaces the reservation of the service it extends instead of adding to it.
    return [
        "    deploy:",
        "      resources:",
        "        reservations:",
        "          devices: !override",
        "            - driver: nvidia",
        f'              device_ids: ["{gpu}"]',
        "              capabilities: [gpu]",
    ]


def override(ids: list[str]) -> str:
    lines = [
        f"# One worker per GPU ({', '.join(ids)}), each reserving only its own; written by",
        f"# `python3 docker/gpu_workers.py {','.join(ids)}`. Use it on top of docker-compose.yml:",
        "#   docker compose -f docker-compose.yml -f docker-compose.gpus.yml up --build -d",
        "services:",
        "  worker:",
        *_reservation(ids[0]),
    ]
    for gpu in ids[1:]:
        name = f"worker-gpu{gpu}" if gpu.isdigit() else f"worker-{gpu.lower()}"
        lines += [
            f"  {name}:",
            "    extends:",
            "      file: docker-compose.yml",
            "      service: worker",
            *_reservation(gpu),
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("gpus", help="how many GPUs (0..N-1), or a comma-separated list of GPU ids")
    args = parser.parse_args(argv)
    try:
        sys.stdout.write(override(gpu_ids(args.gpus)))
    except ValueError as exc:
        parser.error(str(exc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
