"""`nst submit`, `nst status`, `nst cancel`, `nst jobs`: the service from a terminal, through nst_client.

Exit codes: 0 done (or submitted with --detach / no --wait), 1 the job failed, 2 a request was refused
(bad image or parameter), 3 the service is unreachable or unavailable, 4 --timeout passed, 130 canceled
by Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from nst_cli.options import add_param_arguments, params_from_args

EXIT_FAILED, EXIT_REFUSED, EXIT_UNAVAILABLE, EXIT_TIMEOUT, EXIT_INTERRUPTED = 1, 2, 3, 4, 130


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", default=os.environ.get("NST_SERVER", "http://127.0.0.1:8000"),
                        help="service URL (env NST_SERVER; default %(default)s)")
    parser.add_argument("--api-key", default=os.environ.get("NST_API_KEY"), help="API key (env NST_API_KEY)")


def register(subparsers: argparse._SubParsersAction) -> None:
    submit = subparsers.add_parser("submit", help="send a job to the service", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    submit.add_argument("content", type=Path)
    submit.add_argument("styles", type=Path, nargs="+", metavar="STYLE")
    add_param_arguments(submit)
    submit.add_argument("--preview-every", type=int, default=0, help="previews every N steps on the server")
    submit.add_argument("--wait", action="store_true", help="follow the job with a progress bar until it ends")
    submit.add_argument("--output", type=Path, help="download the result here (implies --wait)")
    submit.add_argument("--timeout", type=float, default=None, help="give up waiting after this many seconds")
    submit.add_argument("--detach", action="store_true", help="on Ctrl-C leave the job running (default: cancel it)")
    submit.add_argument("--idempotency-key", help="resubmitting with the same key returns the same job")
    _common(submit)
    submit.set_defaults(handler=run_submit)

    status = subparsers.add_parser("status", help="show a job")
    status.add_argument("job_id")
    _common(status)
    status.set_defaults(handler=run_status)

    cancel = subparsers.add_parser("cancel", help="cancel a job")
    cancel.add_argument("job_id")
    _common(cancel)
    cancel.set_defaults(handler=run_cancel)

    jobs = subparsers.add_parser("jobs", help="list recent jobs")
    jobs.add_argument("--limit", type=int, default=20)
    _common(jobs)
    jobs.set_defaults(handler=run_jobs)


def _fail(exc: Exception) -> int:
    from nst_client import InvalidRequest, ServiceUnavailable, TransportError

    print(f"nst: {exc}", file=sys.stderr)
    if isinstance(exc, InvalidRequest):
        return EXIT_REFUSED
    if isinstance(exc, (TransportError, ServiceUnavailable)):
        return EXIT_UNAVAILABLE
    return EXIT_FAILED


def run_submit(args: argparse.Namespace) -> int:
    from nst_client import NstClient, NstClientError, WaitTimeout

    try:
        params = params_from_args(args, preview_every=args.preview_every).to_dict()
    except ValueError as exc:
        print(f"nst submit: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    form = {k: v for k, v in params.items() if k not in ("content_layers", "style_layers", "style_layer_weights")}
    for path in [args.content, *args.styles]:
        if not path.is_file():
            print(f"nst submit: no such file: {path}", file=sys.stderr)
            return EXIT_REFUSED
    with NstClient(args.server, api_key=args.api_key) as client:
        try:
            job = client.submit(args.content, args.styles, idempotency_key=args.idempotency_key, **form)
        except NstClientError as exc:
            return _fail(exc)
        print(job.id)
        if not (args.wait or args.output):
            return 0
        try:
            final = _follow(client, job.id, args.timeout)
        except KeyboardInterrupt:
            if not args.detach:
                try:
                    client.cancel(job.id)
                    print(f"nst: canceled job {job.id}", file=sys.stderr)
                except NstClientError:
                    pass
            else:
                print(f"nst: detached; the job {job.id} goes on", file=sys.stderr)
            return EXIT_INTERRUPTED
        except WaitTimeout as exc:
            print(f"nst: {exc}", file=sys.stderr)
            return EXIT_TIMEOUT
        except NstClientError as exc:
            return _fail(exc)
        if final.status != "succeeded":
            error = final.error or {}
            print(f"nst: job {final.status}: {error.get('message', '')} ({error.get('code', '')})", file=sys.stderr)
            return EXIT_FAILED if final.status == "failed" else EXIT_INTERRUPTED
        if args.output:
            client.download(job.id, args.output)
            print(f"saved {args.output}", file=sys.stderr)
        return 0


def _follow(client: Any, job_id: str, timeout_s: float | None) -> Any:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                   console=__import__("rich.console", fromlist=["Console"]).Console(stderr=True))
    task = bar.add_task("queued", total=None, info="")

    def on_event(event: Any) -> None:
        if event.type == "progress":
            p = event.data
            losses = p["losses"]
            bar.update(task, description="painting", total=p["steps"], completed=p["step"],
                       info=f"content {losses['content']:.3g} style {losses['style']:.3g}")
        elif event.type == "snapshot" and event.data.get("queue_position"):
            bar.update(task, description=f"queued #{event.data['queue_position']}")

    with bar:
        return client.wait(job_id, timeout_s=timeout_s, on_event=on_event)


def run_status(args: argparse.Namespace) -> int:
    from nst_client import NstClient, NstClientError

    with NstClient(args.server, api_key=args.api_key) as client:
        try:
            job = client.get(args.job_id)
        except NstClientError as exc:
            return _fail(exc)
    progress = job.progress or {}
    line = f"{job.id} {job.status}"
    if progress:
        line += f" step {progress['step']}/{progress['steps']}"
    if job.error:
        line += f" {job.error['code']}: {job.error['message']}"
    print(line)
    return EXIT_FAILED if job.status == "failed" else 0


def run_cancel(args: argparse.Namespace) -> int:
    from nst_client import NstClient, NstClientError

    with NstClient(args.server, api_key=args.api_key) as client:
        try:
            job = client.cancel(args.job_id)
        except NstClientError as exc:
            return _fail(exc)
    print(f"{job.id} {job.status}")
    return 0


def run_jobs(args: argparse.Namespace) -> int:
    from nst_client import NstClient, NstClientError

    with NstClient(args.server, api_key=args.api_key) as client:
        try:
            jobs = client.list(limit=args.limit)
        except NstClientError as exc:
            return _fail(exc)
    for job in jobs:
        print(f"{job.id} {job.status:<9} {job.raw['created_at']}")
    return 0
