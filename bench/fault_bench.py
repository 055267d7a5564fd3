"""Fault trial of the one-command stack: `nst up` with N workers and a fake engine, jobs submitted continuously
while workers, the API and Redis are killed with SIGKILL in turn. Afterwards every accepted job must have ended
(succeeded, or failed with a code): none lost, none left queued or running; and the stack must have come back by
itself (ready with all its workers, a new job succeeds). Prints the ledger; exits 1 when anything is wrong.

    .venv/bin/python bench/fault_bench.py [--seconds 120] [--workers 3] [--kill-every 4] [--rate 3]

tests/cli/test_faults.py runs it at a small scale; bench/README.md has a larger run.
"""

from __future__ import annotations

import argparse
import itertools
import random
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.cli.stack import NstUp
from tests.conftest import make_image

TERMINAL = {"succeeded", "failed", "canceled"}
KILL_ORDER = ("worker", "api", "worker", "redis")


class Submitter(threading.Thread):
    """Submits a small job every 1/`rate` s until stopped; keeps the ids of the accepted ones."""

    def __init__(self, url: str, rate: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.url, self.rate, self.random = url, rate, random.Random(seed)
        self.accepted: list[str] = []
        self.refused: Counter[str] = Counter()
        self.stop = threading.Event()
        self.images = [make_image(80, 60, seed=1), make_image(64, 64, seed=2)]

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self.stop.wait(self.random.expovariate(self.rate)):
                files = [
                    ("content", ("c.png", self.images[0], "image/png")),
                    ("style", ("s.png", self.images[1], "image/png")),
                ]
                data = {"max_size": "64", "steps": str(self.random.randint(2, 15)), "preview_every": "0"}
                try:
                    response = client.post("/jobs", files=files, data=data)
                except httpx.HTTPError as exc:  # the API was down: not accepted, the client knows
                    self.refused[f"no answer ({type(exc).__name__})"] += 1
                    continue
                if response.status_code == 202:
                    self.accepted.append(response.json()["id"])
                else:
                    self.refused[f"{response.status_code} {response.json().get('error', {}).get('code')}"] += 1


def final_states(url: str, job_ids: list[str], timeout_s: float) -> dict[str, dict | None]:
    """Each job's record once it is terminal (None: 404, lost); still queued or running at `timeout_s`: as is."""
    states: dict[str, dict | None] = {}
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=url, timeout=10) as client:
        pending = list(job_ids)
        while pending and time.monotonic() < deadline:
            still = []
            for job_id in pending:
                try:
                    response = client.get(f"/jobs/{job_id}")
                except httpx.HTTPError:
                    still.append(job_id)
                    continue
                if response.status_code == 404:
                    states[job_id] = None
                elif response.status_code == 200:
                    states[job_id] = response.json()
                    if states[job_id]["status"] not in TERMINAL:
                        still.append(job_id)
                else:
                    still.append(job_id)
            pending = still
            if pending:
                time.sleep(0.5)
    return states


def trial(seconds: float, workers: int, kill_every: float, rate: float, seed: int) -> bool:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as folder:
        up = NstUp(
            Path(folder),
            workers=workers,
            engine="tests.engines:SlowEngine",
            heartbeat_interval_s=0.5,
            heartbeat_ttl_s=2,
            reaper_interval_s=1,
            queued_grace_s=5,
            retry_lost_jobs=2,
            max_queued_jobs=100_000,
            log_level="WARNING",
        )
        try:
            submitter = Submitter(up.url, rate, seed)
            submitter.start()
            kills: Counter[str] = Counter()
            started = last_kill_at = time.monotonic()
            for role in itertools.cycle(KILL_ORDER):
                time.sleep(kill_every * rng.uniform(0.5, 1.5))
                if time.monotonic() - started > seconds:
                    break
                try:
                    up.kill(role)
                    kills[role] += 1
                    last_kill_at = time.monotonic()
                except IndexError:  # that child is being restarted right now
                    kills[f"{role} (down already)"] += 1
            submitter.stop.set()
            submitter.join()
            chaos_s = time.monotonic() - started
            states = final_states(up.url, submitter.accepted, timeout_s=120 + 2 * len(submitter.accepted))
            recovered, recovered_at = _recovered(up, workers)
            log = up.log()
        finally:
            stopped = up.stop()
    outcomes: Counter[str] = Counter()
    for job_id in submitter.accepted:
        state = states.get(job_id)
        if state is None:
            outcomes["LOST (404)" if job_id in states else "STUCK (no answer)"] += 1
        elif state["status"] not in TERMINAL:
            outcomes[f"STUCK ({state['status']})"] += 1
        elif state["status"] == "failed":
            outcomes[f"failed: {(state.get('error') or {}).get('code') or 'NO CODE'}"] += 1
        else:
            outcomes[state["status"]] += 1
    restarts = Counter(re.findall(r"nst up: (Redis|API|worker) (?:\d+ )?restarted", log))
    # A child that exited by itself (not killed by this trial) is a fault of its own: a worker must ride out
    # a Redis restart, not quit.
    own_exits = Counter(
        role
        for role, code in re.findall(
            r"nst up: (Redis|API|worker)(?: \d+)? \(pid \d+\) "
            r"exited with (-?\d+)",
            log,
        )
        if code != "-9"
    )
    bad = sum(n for what, n in outcomes.items() if what.startswith(("LOST", "STUCK")) or "NO CODE" in what)
    print(
        f"fault trial: {chaos_s:.0f} s of submissions at {rate}/s with a SIGKILL every ~{kill_every} s; "
        f"nst up with {workers} workers (SlowEngine, 0.1 s a step, 2-15 steps a job)"
    )
    print(f"kills:      {', '.join(f'{k} {n}' for k, n in sorted(kills.items()))}")
    print(
        f"restarts:   {', '.join(f'{k} {n}' for k, n in sorted(restarts.items()))} (said in nst up's log); "
        f"exits without a kill: {', '.join(f'{k} {n}' for k, n in sorted(own_exits.items())) or 'none'}"
    )
    refused = sum(submitter.refused.values())
    print(
        f"submitted:  {len(submitter.accepted) + refused}: accepted {len(submitter.accepted)}, refused "
        f"{refused} ({', '.join(f'{k} {n}' for k, n in sorted(submitter.refused.items())) or '-'})"
    )
    print(f"accepted:   {len(submitter.accepted)}: {', '.join(f'{k} {n}' for k, n in sorted(outcomes.items()))}")
    print(
        f"recovered:  {'yes' if recovered else 'NO'}: ready with {workers} workers and a new job succeeded "
        f"{recovered_at - last_kill_at:.1f} s after the last kill; nst up exited with {stopped}"
    )
    ok = not bad and not own_exits and recovered and stopped == 0
    print(f"verdict:    {'OK: every accepted job ended, none lost or stuck' if ok else 'FAILED'}")
    return ok


def _recovered(up: NstUp, workers: int) -> tuple[bool, float]:
    """Whether the stack is ready with all its workers and runs a new job; and when that was seen."""
    started = time.monotonic()
    with httpx.Client(base_url=up.url, timeout=10) as client:
        while time.monotonic() - started < 120:
            try:
                ready = client.get("/readyz")
                if ready.status_code == 200 and ready.json()["workers"] == workers:
                    files = [
                        ("content", ("c.png", make_image(80, 60), "image/png")),
                        ("style", ("s.png", make_image(64, 64), "image/png")),
                    ]
                    job = client.post("/jobs", files=files, data={"max_size": "64", "steps": "2"}).json()
                    state = final_states(up.url, [job["id"]], timeout_s=60).get(job["id"])
                    return bool(state and state["status"] == "succeeded"), time.monotonic()
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
    return False, time.monotonic()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--kill-every", type=float, default=4)
    parser.add_argument("--rate", type=float, default=3, help="submissions per second")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    sys.exit(0 if trial(args.seconds, args.workers, args.kill_every, args.rate, args.seed) else 1)


if __name__ == "__main__":
    main()
