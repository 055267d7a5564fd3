"""`nst submit`, `nst status`, `nst cancel`, `nst finish`, `nst jobs`: the job service from a terminal, through
nst_client."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from nst_cli.options import STYLE_MASK_HELP, add_param_arguments, help_text, params_from_args
from nst_cli.sweep import SWEEP_HELP, axes_from_args, submit_sweep
from nst_shared.job_options import RESULT_FORMATS, JobOptions

if TYPE_CHECKING:
    from nst_client import Event, Job, NstClient, NstClientError

# What a script can tell from the exit status (shown by every subcommand's --help).
EXIT_OK = 0
EXIT_FAILED = 1  # the job failed (its error code and message are printed)
EXIT_REFUSED = 2  # bad flags, a missing file, or the service refused an image, a parameter or the request
EXIT_UNAVAILABLE = 3  # the service cannot be reached, or answered 503 (queue full, Redis down)
EXIT_TIMEOUT = 4  # --timeout passed while waiting; the job goes on
EXIT_CANCELED = 5  # the job was canceled (by `nst cancel` or another client)
EXIT_NOT_FOUND = 6  # no such job (unknown, deleted or expired)
EXIT_INTERRUPTED = 130  # Ctrl-C while waiting (the job is canceled, or left running with --detach)

EXIT_CODES = """exit status:
  0    done: the job succeeded (or was queued, without --wait)
  1    the job failed
  2    refused: bad flags, a missing file, or an image, parameter or request the service refused
  3    the service cannot be reached or is unavailable (503)
  4    --timeout passed while waiting (the job goes on)
  5    the job was canceled
  6    no such job
  130  interrupted by Ctrl-C (the job is canceled on the server, unless --detach)

environment: NST_SERVER (service URL), NST_API_KEY (sent as a bearer token)"""

DEFAULT_SERVER = "http://127.0.0.1:8000"


def _add_connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server",
        default=os.environ.get("NST_SERVER", DEFAULT_SERVER),
        metavar="URL",
        help="the service's URL (env NST_SERVER; default: %(default)s)",
    )
    parser.add_argument(
        "--api-key", default=os.environ.get("NST_API_KEY"), help="API key, sent as a bearer token (env NST_API_KEY)"
    )


def _parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], name: str, *, help: str, description: str
) -> argparse.ArgumentParser:
    return subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    submit = _parser(
        subparsers,
        "submit",
        help="send a job to the service (and wait for the picture)",
        description="Upload a photo and style images to the job service. Prints the job id; with "
        "--wait (or --output) shows a progress bar until the job ends, then downloads "
        "the PNG. Ctrl-C while waiting cancels the job on the server (--detach: leaves "
        "it running); `nst finish ID` from another terminal ends it now with the "
        "picture so far.",
    )
    submit.add_argument("content", type=Path, metavar="CONTENT", help="the photograph to paint")
    submit.add_argument("styles", type=Path, nargs="+", metavar="STYLE", help="one or more style images")
    submit.add_argument("--style-mask", type=Path, action="append", default=None, metavar="MASK", help=STYLE_MASK_HELP)
    add_param_arguments(submit)
    submit.add_argument("--preview-every", default=None, metavar="N", help=help_text("preview_every"))
    submit.add_argument("--sweep", action="append", default=[], metavar="NAME=V1,V2,...", help=SWEEP_HELP)
    submit.add_argument("--wait", action="store_true", help="follow the job with a progress bar until it ends")
    submit.add_argument("--output", "-o", type=Path, help="save the result here (implies --wait)")
    submit.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop waiting after this long (exit 4; the job goes on)",
    )
    submit.add_argument(
        "--finish-after",
        type=float,
        default=None,
        metavar="SECONDS",
        help="paint for at most this long once running, then finish the job with the picture so far (implies --wait)",
    )
    submit.add_argument(
        "--detach", action="store_true", help="on Ctrl-C stop waiting but leave the job running (default: cancel it)"
    )
    submit.add_argument(
        "--idempotency-key", metavar="KEY", help="submitting again with the same key and files returns the same job"
    )
    submit.add_argument("--webhook", metavar="URL", help="the service POSTs a signed notice here when the job ends")
    submit.add_argument(
        "--webhook-events",
        default=None,
        metavar="LIST",
        help="comma-separated: completed (the end; default), status (every status change), progress (while it "
        "runs, every few seconds)",
    )
    for name, field in JobOptions.model_fields.items():  # --format, --quality, --cancel-after, --ttl-s
        choices = RESULT_FORMATS if name == "format" else None
        flag = "--" + name.replace("_", "-")
        submit.add_argument(flag, default=None, choices=choices, metavar=name.upper(), help=field.description)
    _add_connection(submit)
    submit.set_defaults(handler=run_submit)

    status = _parser(
        subparsers,
        "status",
        help="show a job of the service",
        description="Show a job's status and progress. Exit status 1 when it failed, 5 when canceled.",
    )
    status.add_argument("job_id", metavar="ID")
    status.add_argument("--json", action="store_true", help="print the job as the API returns it")
    _add_connection(status)
    status.set_defaults(handler=run_status)

    cancel = _parser(
        subparsers,
        "cancel",
        help="cancel a job of the service",
        description="Cancel a queued or running job (a finished one is refused: exit 2).",
    )
    cancel.add_argument("job_id", metavar="ID")
    _add_connection(cancel)
    cancel.set_defaults(handler=run_cancel)

    finish = _parser(
        subparsers,
        "finish",
        help="finish a running job now, keeping its picture so far",
        description="Stop a running job after its current step: it succeeds with the latest picture "
        "as its result (a queued or finished job is refused: exit 2).",
    )
    finish.add_argument("job_id", metavar="ID")
    _add_connection(finish)
    finish.set_defaults(handler=run_finish)

    jobs = _parser(subparsers, "jobs", help="list the service's recent jobs", description="Recent jobs, newest first.")
    jobs.add_argument("--limit", type=int, default=20, help="how many (1..100; default: %(default)s)")
    jobs.add_argument("--offset", type=int, default=0, help="skip this many (default: %(default)s)")
    jobs.add_argument("--json", action="store_true", help="print the jobs as the API returns them")
    _add_connection(jobs)
    jobs.set_defaults(handler=run_jobs)


def _error(prefix: str, message: str) -> None:
    print(f"{prefix}: {message}", file=sys.stderr)


def _exit_code(exc: NstClientError) -> int:
    from nst_client import ApiError, Conflict, InvalidRequest, JobNotFound, ServiceUnavailable, TransportError

    if isinstance(exc, (InvalidRequest, Conflict)):
        return EXIT_REFUSED
    if isinstance(exc, (TransportError, ServiceUnavailable)):
        return EXIT_UNAVAILABLE
    if isinstance(exc, JobNotFound):
        return EXIT_NOT_FOUND
    if isinstance(exc, ApiError) and 400 <= exc.status < 500:
        return EXIT_REFUSED
    return EXIT_FAILED


def _job_code(job: Job) -> int:
    return {"failed": EXIT_FAILED, "canceled": EXIT_CANCELED}.get(job.status.value, EXIT_OK)


def _client(args: argparse.Namespace) -> NstClient:
    from nst_client import NstClient

    return NstClient(args.server, api_key=args.api_key)


def _guarded(name: str, action: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Client errors become a one-line message and their exit status (no traceback)."""

    def handler(args: argparse.Namespace) -> int:
        from nst_client import NstClientError

        try:
            return action(args)
        except KeyboardInterrupt:  # before there was a job to cancel, or while listing
            return EXIT_INTERRUPTED
        except NstClientError as exc:
            _error(f"nst {name}", str(exc))
            return _exit_code(exc)

    return handler


def _submit(args: argparse.Namespace) -> int:
    from nst_client import WaitTimeout
    from nst_shared.masks import check_mask_count

    try:
        overrides = {"preview_every": args.preview_every} if args.preview_every is not None else {}
        params = params_from_args(args, **overrides)
        params.style_weights(len(args.styles))
        check_mask_count(len(args.style_mask or []), len(args.styles))
        axes = axes_from_args(args)
    except ValueError as exc:
        _error("nst submit", str(exc))
        return EXIT_REFUSED
    for path in [args.content, *args.styles, *(args.style_mask or [])]:
        if not path.is_file():
            _error("nst submit", f"no such file: {path}")
            return EXIT_REFUSED
    # Only the parameters given: the service (and a GPU worker's defaults) decide the others.
    fields = {k: v for k, v in params.to_dict().items() if k in params.model_fields_set}
    events = [e.strip() for e in args.webhook_events.split(",")] if args.webhook_events else None
    options = {name: getattr(args, name) for name in JobOptions.model_fields if getattr(args, name) is not None}
    if axes:
        with _client(args) as client:
            return submit_sweep(client, args, axes, {**fields, **options})
    with _client(args) as client:
        job = client.submit(
            args.content,
            args.styles,
            style_masks=args.style_mask,
            idempotency_key=args.idempotency_key,
            webhook_url=args.webhook,
            webhook_events=events,
            **fields,
            **options,
        )
        print(job.id, flush=True)
        if not (args.wait or args.output or args.finish_after is not None):
            return EXIT_OK
        try:
            final = _follow(client, job.id, timeout_s=args.timeout, finish_after_s=args.finish_after)
        except WaitTimeout as exc:
            _error("nst submit", f"{exc}; it goes on (nst status {job.id})")
            return EXIT_TIMEOUT
        except KeyboardInterrupt:
            _interrupted(client, job.id, detach=args.detach)
            return EXIT_INTERRUPTED
        if final.status != "succeeded":
            reason = f": {final.error.message} ({final.error.code})" if final.error else ""
            _error("nst submit", f"job {final.id} {final.status}{reason}")
            return _job_code(final)
        if args.output:
            client.download(job.id, args.output)
            print(f"saved {args.output}", file=sys.stderr)
        return EXIT_OK


def _interrupted(client: NstClient, job_id: str, *, detach: bool) -> None:
    """Ctrl-C while waiting: cancel the job on the server, or leave it running with --detach."""
    from nst_client import NstClientError

    if detach:
        _error("nst submit", f"detached; job {job_id} goes on (nst status {job_id})")
        return
    try:
        job = client.cancel(job_id)
        _error(
            "nst submit", f"canceled job {job_id}" + (" (it stops within one step)" if job.status == "running" else "")
        )
    except NstClientError as exc:  # it ended meanwhile, or the service is gone
        _error("nst submit", f"could not cancel job {job_id}: {exc}")
    except KeyboardInterrupt:
        pass


def _follow(client: NstClient, job_id: str, *, timeout_s: float | None, finish_after_s: float | None = None) -> Job:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("[bold]{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[losses]}"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[left]}"),
        console=Console(stderr=True),
        transient=False,
    )
    task = bar.add_task("connecting", total=None, losses="", left="")
    finish = _FinishAfter(client, job_id, finish_after_s) if finish_after_s is not None else None

    def on_event(event: Event) -> None:
        if finish is not None:
            finish.on_event(event)
        job = event.job
        if job is not None and job.status == "queued":
            where = f" #{job.queue_position}" if job.queue_position else ""
            bar.update(task, description=f"queued{where}")
        elif event.type == "status":
            bar.update(task, description=str(event.data.get("status", "")))
        progress = event.progress or (job.progress if job is not None else None)
        if progress is not None:
            losses = "  ".join(f"{k} {progress.losses[k]:.3g}" for k in ("content", "style") if k in progress.losses)
            left = f"~{_duration(progress.eta_s)} left" if progress.eta_s is not None else ""
            scale = f" {progress.scale}/{progress.scales}" if progress.scale and (progress.scales or 0) > 1 else ""
            bar.update(
                task,
                description=f"painting{scale}",
                total=progress.steps,
                completed=progress.step,
                losses=losses,
                left=left,
            )

    with bar:
        job = client.wait(job_id, timeout_s=timeout_s, on_event=on_event)
        bar.update(task, description=job.status.value, left="")
    return job


class _FinishAfter:
    """Asks the job to finish once its run has lasted `after_s` seconds, by the worker's own clock (a progress
    event's `elapsed_s`), so a late or resumed connection replaying old steps does not shift it."""

    def __init__(self, client: NstClient, job_id: str, after_s: float) -> None:
        self.client, self.job_id, self.after_s = client, job_id, after_s
        self.asked = False

    def on_event(self, event: Event) -> None:
        from nst_client import Conflict

        progress = event.progress
        if self.asked or progress is None or (progress.elapsed_s or 0.0) < self.after_s:
            return
        self.asked = True
        try:
            self.client.finish(self.job_id)
        except Conflict:  # it ended meanwhile
            pass


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds}s"


def _status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.get(args.job_id)
    if args.json:
        print(json.dumps(job.raw, indent=2))
        return _job_code(job)
    print(_describe(job))
    return _job_code(job)


def _describe(job: Job) -> str:
    parts = [job.id, job.status.value]
    if job.queue_position:
        parts.append(f"#{job.queue_position} in the queue")
    if job.progress is not None and job.status == "running":
        parts.append(f"step {job.progress.step}/{job.progress.steps}")
        if job.progress.eta_s is not None:
            parts.append(f"~{_duration(job.progress.eta_s)} left")
    if job.error is not None:
        parts.append(f"{job.error.code}: {job.error.message}")
    return "  ".join(parts)


def _cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.cancel(args.job_id)
    print(f"{job.id} {job.status.value}" + (" (stopping within one step)" if job.status == "running" else ""))
    return EXIT_OK


def _finish(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.finish(args.job_id)
    print(f"{job.id} {job.status.value}" + (" (finishing after the current step)" if job.status == "running" else ""))
    return EXIT_OK


def _jobs(args: argparse.Namespace) -> int:
    with _client(args) as client:
        page = client.list_jobs(offset=args.offset, limit=args.limit)
    if args.json:
        print(json.dumps({"items": [j.raw for j in page.items], "total": page.total}, indent=2))
        return EXIT_OK
    for job in page.items:
        created = job.created_at.strftime("%Y-%m-%d %H:%M:%S") if job.created_at else ""
        print(f"{job.id}  {job.status.value:<9}  {created}" + (f"  {job.error.code}" if job.error else ""))
    print(f"{len(page.items)} of {page.total} jobs", file=sys.stderr)
    return EXIT_OK


run_submit = _guarded("submit", _submit)
run_status = _guarded("status", _status)
run_cancel = _guarded("cancel", _cancel)
run_finish = _guarded("finish", _finish)
run_jobs = _guarded("jobs", _jobs)
