"""`nst submit --sweep name=v1,v2,...`: one job per cell through the service, a progress bar over the cells, and
the contact sheet saved with --output."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nst_client import NstClient, Sweep

SWEEP_HELP = (
    "paint one job per value (a sweep; repeat for a grid of two parameters), e.g. style_weight=5,15,45; "
    "--output saves the contact sheet"
)


def axes_from_args(args: argparse.Namespace) -> dict[str, list[str]]:
    """The --sweep flags as {name: values} (ValueError for a malformed one)."""
    from nst_client.sweeps import parse_sweep_flag

    return dict(parse_sweep_flag(text) for text in args.sweep)


def submit_sweep(
    client: NstClient, args: argparse.Namespace, axes: dict[str, list[str]], fields: dict[str, Any]
) -> int:
    """Submit the sweep, print its id, and with --wait or --output follow it and save the sheet. The exit status
    is 0 when at least one cell succeeded (the sheet shows which did not), else 1."""
    from nst_client import WaitTimeout

    sweep = client.submit_sweep(
        args.content,
        args.styles,
        axes,
        style_masks=args.style_mask,
        idempotency_key=args.idempotency_key,
        **fields,
    )
    print(sweep.id, flush=True)
    if not (args.wait or args.output):
        return 0
    try:
        final = _follow(client, sweep.id, timeout_s=args.timeout)
    except WaitTimeout as exc:
        print(f"nst submit: {exc}; its cells go on", file=sys.stderr)
        return 4
    except KeyboardInterrupt:
        if not args.detach:
            client.cancel_sweep(sweep.id)
            print(f"nst submit: canceled sweep {sweep.id}", file=sys.stderr)
        return 130
    if not final.progress.get("succeeded"):
        print(f"nst submit: no cell of sweep {final.id} succeeded", file=sys.stderr)
        return 1
    if args.output:
        args.output.write_bytes(client.sweep_sheet(sweep.id))
        print(f"saved {args.output}", file=sys.stderr)
    return 0


def _follow(client: NstClient, sweep_id: str, *, timeout_s: float | None) -> Sweep:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("[bold]sweep"),
        BarColumn(),
        TextColumn("{task.fields[cells]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )
    task = bar.add_task("sweep", total=1.0, cells="")

    def on_update(sweep: Sweep) -> None:
        progress = sweep.progress
        cells = f"{progress.get('ended', 0)}/{progress.get('cells', 0)} cells, {progress.get('running', 0)} running"
        bar.update(task, completed=progress.get("fraction", 0.0), cells=cells)

    with bar:
        return client.wait_sweep(sweep_id, timeout_s=timeout_s, on_update=on_update)
