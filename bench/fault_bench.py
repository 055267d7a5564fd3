"""Does it survive faults: every job accepted while parts of the stack are killed or cut must end (none lost or
stuck) and the stack come back by itself; prints the ledger, exits 1 otherwise (bench/README.md has the trials).

    .venv/bin/python bench/fault_bench.py kills [--seconds 120] [--workers 3] [--kill-every 4] [--rate 3]
    sudo .venv/bin/python bench/fault_bench.py cuts [--rate 0.1] [--steps 8] [--size 64] [--engine ENGINE]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import random
import re
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from common import stack

from tests.conftest import make_image, wait_until

TERMINAL = {"succeeded", "failed", "canceled"}
KILL_ORDER = ("worker", "api", "worker", "redis")
KILLS_SETTINGS = dict(engine="tests.engines:SlowEngine", heartbeat_interval_s=0.5, heartbeat_ttl_s=2, retry_lost_jobs=2)
KILLS_SETTINGS |= dict(reaper_interval_s=1, queued_grace_s=5, log_level="WARNING", max_queued_jobs=100_000)
PAUSE_S, TTL_S = 8, 4  # cuts: seconds between cut-offs; a heartbeat's life (each worker's cut lasts longer)
HOST_CUTS = (("w1", TTL_S + 4), ("redis", 12), ("storage", 6), ("w2", TTL_S + 4))  # host, seconds cut
CUTS_SETTINGS = dict(heartbeat_interval_s=1, heartbeat_ttl_s=TTL_S, reaper_interval_s=1, retry_lost_jobs=1)


class Submitter(threading.Thread):
    """A small job every ~1/`rate` s until stopped (from `where`, a host of the bed); refused ones are not accepted."""

    def __init__(self, url: str, rate: float, seed: int, form: dict, where=contextlib.nullcontext) -> None:
        super().__init__(daemon=True)
        self.url, self.rate, self.random, self.form, self.where = url, rate, random.Random(seed), form, where
        self.accepted, self.refused, self.stop = [], Counter(), threading.Event()

    def run(self) -> None:
        size = int(self.form["max_size"])
        images = [make_image(size + 16, size, seed=1), make_image(size, size, seed=2)]
        files = [("content", ("c.png", images[0], "image/png")), ("style", ("s.png", images[1], "image/png"))]
        with self.where(), httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop.wait(self.random.expovariate(self.rate)):
                steps = self.form.get("steps") or str(self.random.randint(2, 15))
                try:
                    response = client.post("/jobs", files=files, data={**self.form, "steps": steps})
                except httpx.HTTPError as exc:  # the API was down: not accepted, the client knows
                    self.refused[f"no answer ({type(exc).__name__})"] += 1
                    continue
                if response.status_code == 202:
                    self.accepted.append(response.json()["id"])
                    continue
                self.refused[f"{response.status_code} {response.json().get('error', {}).get('code')}"] += 1
                time.sleep(float(response.headers.get("retry-after", "0")))  # as a client would


def final_states(url: str, job_ids: list[str], timeout_s: float) -> dict[str, dict | None]:
    """Each job's record once it is terminal (None: 404, lost); still queued or running at `timeout_s`: as is."""
    states, pending, deadline = {}, list(job_ids), time.monotonic() + timeout_s
    with httpx.Client(base_url=url, timeout=10) as client:
        while pending and time.monotonic() < deadline:
            for job_id in list(pending):
                with contextlib.suppress(httpx.HTTPError):
                    response = client.get(f"/jobs/{job_id}")
                    if response.status_code in (200, 404):
                        states[job_id] = response.json() if response.status_code == 200 else None
                        if states[job_id] is None or states[job_id]["status"] in TERMINAL:
                            pending.remove(job_id)
            time.sleep(0.5 if pending else 0)
    return states


def outcome(states: dict[str, dict | None], job_id: str) -> str:
    state = states.get(job_id, {"status": "no answer"})  # not terminal: stuck
    if state is None:
        return "LOST (404)"
    if state["status"] == "failed":
        return f"failed: {(state.get('error') or {}).get('code') or 'NO CODE'}"
    return state["status"] if state["status"] in TERMINAL else f"STUCK ({state['status']})"


def came_back(up, workers: int) -> bool:
    """Whether the stack is ready with all its workers by itself, and runs a new job."""
    try:
        with up.client() as client:
            wait_until(lambda: client.get("/readyz").json()["workers"] == workers, timeout_s=120, what="workers")
            files = {"content": make_image(80, 60), "style": make_image(64, 64)}
            job = client.post("/jobs", files=files, data={"max_size": "64", "steps": "2"}).json()
    except (httpx.HTTPError, AssertionError):
        return False
    return (final_states(up.url, [job["id"]], timeout_s=60).get(job["id"]) or {}).get("status") == "succeeded"


def kills(args: argparse.Namespace) -> bool:
    rng, kills, form = random.Random(1), Counter(), {"max_size": "64", "preview_every": "0"}
    with stack(workers=args.workers, **KILLS_SETTINGS) as up:
        submitter = Submitter(up.url, args.rate, 1, form)
        submitter.start()
        started = last_kill_at = time.monotonic()
        for role in itertools.cycle(KILL_ORDER):
            time.sleep(args.kill_every * rng.uniform(0.5, 1.5))
            if time.monotonic() - started > args.seconds:
                break
            try:
                up.kill(role)
                kills[role] += 1
                last_kill_at = time.monotonic()
            except IndexError:  # that child is being restarted right now
                kills[f"{role} (down already)"] += 1
        submitter.stop.set()
        submitter.join()
        states = final_states(up.url, submitter.accepted, timeout_s=120 + 2 * len(submitter.accepted))
        recovered = came_back(up, args.workers)
        recovered_s = time.monotonic() - last_kill_at
        log = up.log()
    stopped = up.stopped
    outcomes = Counter(outcome(states, job_id) for job_id in submitter.accepted)
    restarts = Counter(re.findall(r"nst up: (Redis|API|worker) (?:\d+ )?restarted", log))
    # A child that exited by itself (not killed here) is a fault of its own: a worker must ride out a Redis restart.
    exits = re.findall(r"nst up: (Redis|API|worker)(?: \d+)? \(pid \d+\) exited with (-?\d+)", log)
    own_exits = Counter(role for role, code in exits if code != "-9")
    bad = sum(n for what, n in outcomes.items() if what.startswith(("LOST", "STUCK")) or "NO CODE" in what)

    def listed(counter: Counter) -> str:
        return ", ".join(f"{k} {n}" for k, n in sorted(counter.items())) or "none"

    ok = not bad and not own_exits and recovered and stopped == 0
    accepted, refused = submitter.accepted, submitter.refused
    print(f"fault trial: {args.seconds:.0f} s at {args.rate}/s, a SIGKILL every ~{args.kill_every} s, ", end="")
    print(f"nst up with {args.workers} workers (SlowEngine, 0.1 s a step, 2-15 steps a job)")
    print(f"kills:      {listed(kills)}")
    print(f"restarts:   {listed(restarts)} (said in nst up's log); exits without a kill: {listed(own_exits)}")
    print(f"submitted:  {len(accepted) + sum(refused.values())}: accepted {len(accepted)}, refused {listed(refused)}")
    print(f"accepted:   {len(accepted)}: {listed(outcomes)}")
    came = f"ready with {args.workers} workers and a new job succeeded {recovered_s:.1f} s after the last kill"
    print(f"recovered:  {'yes' if recovered else 'NO'}: {came}; nst up exited with {stopped}")
    print(f"verdict:    {'OK: every accepted job ended, none lost or stuck' if ok else 'FAILED'}")
    return ok


def cuts(args: argparse.Namespace) -> bool:
    from tests.fleet import ledger
    from tests.fleet.bed import Bed, can_build, remove_leftovers

    if reason := can_build():
        raise SystemExit(reason)
    for name in remove_leftovers():
        print(f"removed a crashed run's namespace {name}")
    bed = Bed(Path(tempfile.mkdtemp(prefix="nst-fleet-")))
    try:
        started = time.monotonic()
        bed.build()
        bed.start(engine=args.engine, **CUTS_SETTINGS)
        print(f"bed up in {time.monotonic() - started:.0f} s: {bed.root}", flush=True)
        form = {"max_size": str(args.size), "steps": str(args.steps), "preview_every": "5"}
        on_client = functools.partial(bed.on, "client")
        submitters = [Submitter(url, args.rate, i, form, on_client) for i, url in enumerate(bed.api_urls)]
        cut_offs = [(h, functools.partial(bed.cut, h), functools.partial(bed.restore, h), s) for h, s in HOST_CUTS]
        kill = functools.partial(bed.stop, "redis", sig=signal.SIGKILL)
        cut_offs.append(("redis killed", kill, lambda: (bed.restart("redis"), bed.wait_for_redis()), 6))
        started = time.monotonic()
        for submitter in submitters:
            submitter.start()
        for what, cut, restore, seconds in cut_offs:
            time.sleep(PAUSE_S)
            at = time.monotonic() - started
            cut()
            time.sleep(seconds)
            restore()
            print(f"{at:6.1f} s  {what} for {seconds} s", flush=True)
        time.sleep(PAUSE_S)
        for submitter in submitters:
            submitter.stop.set()
            submitter.join()
        accepted = [job_id for s in submitters for job_id in s.accepted]
        refused = sum((s.refused for s in submitters), Counter())
        with bed.on("client"), httpx.Client(base_url=bed.api_urls[0], timeout=30) as api:
            final_states(bed.api_urls[0], accepted, timeout_s=600)  # every accepted job ended, or the ledger says
            taken = ledger.take(bed.redis(), api, accepted)
        print(f"{len(accepted)} jobs in {time.monotonic() - started:.0f} s; refused while cut: {dict(refused) or 0}")
        print(taken.render())
        badly = [code for code in refused if not code.startswith(("503", "429", "no answer"))]
        return bool(accepted) and not badly and (taken.lost, taken.stuck, taken.stale_results) == (0, 0, 0)
    finally:
        bed.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["kills", "cuts"])
    parser.add_argument("--seconds", type=float, default=120, help="kills: seconds of submissions")
    parser.add_argument("--workers", type=int, default=3, help="kills")
    parser.add_argument("--kill-every", type=float, default=4, help="kills: seconds between SIGKILLs, on average")
    parser.add_argument("--rate", type=float, help="submissions a second (per API process); 3 (kills), 0.1 (cuts)")
    parser.add_argument("--steps", type=int, default=8, help="cuts")
    parser.add_argument("--size", type=int, default=64, help="cuts: longest side of the pictures, px")
    parser.add_argument("--engine", default="nst_core.transfer:StyleTransfer", help="cuts")
    args = parser.parse_args()
    args.rate = args.rate or (3 if args.what == "kills" else 0.1)
    sys.exit(0 if (kills if args.what == "kills" else cuts)(args) else 1)


if __name__ == "__main__":
    main()
