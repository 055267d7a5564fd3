"""Fleet trial on the multi-host bed (tests/fleet/bed.py: six hosts in network namespaces, as root): jobs sent
from the client host to both API processes while links are cut silently and Redis is restarted on its host, the
workers running the real engine on tiny images. Afterwards prints the ledger; exits 1 when anything was lost,
left stuck, or a result was written by a stale attempt.

    sudo .venv/bin/python bench/fleet.py [--rate 0.1] [--steps 8] [--size 64] [--engine tests.engines:SlowEngine]

tests/fleet/ runs the same bed small, one cut-off a test, with the fake engine; bench/README.md has a run.
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nst_shared.jobs import JobRecord, Keys
from tests.conftest import make_image, wait_until
from tests.fleet import ledger
from tests.fleet.bed import Bed, can_build, remove_leftovers

TTL_S = 4


class Submitter(threading.Thread):
    """From the client host, sends jobs to the API at `url` at about `rate` a second until stopped; a 503 or no
    answer is a refusal the client sees (it waits Retry-After and goes on), not an accepted job."""

    def __init__(self, bed: Bed, url: str, *, rate: float, steps: int, size: int, seed: int) -> None:
        super().__init__(daemon=True)
        self.bed, self.url, self.rate, self.steps, self.size = bed, url, rate, steps, size
        self.stop = threading.Event()
        self.random = random.Random(seed)
        self.accepted: list[str] = []
        self.refused: Counter[str] = Counter()

    def run(self) -> None:
        images = [make_image(self.size + 16, self.size, seed=1), make_image(self.size, self.size, seed=2)]
        with self.bed.on("client"), httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop.wait(self.random.expovariate(self.rate)):
                files = [("content", ("c.png", images[0], "image/png")), ("style", ("s.png", images[1], "image/png"))]
                data = {"max_size": str(self.size), "steps": str(self.steps), "preview_every": "5"}
                try:
                    response = client.post("/jobs", files=files, data=data)
                except httpx.HTTPError as exc:
                    self.refused[f"no answer ({type(exc).__name__})"] += 1
                    continue
                if response.status_code == 202:
                    self.accepted.append(response.json()["id"])
                else:
                    self.refused[str(response.status_code)] += 1
                    time.sleep(float(response.headers.get("retry-after", "1")))


def cut_offs(bed: Bed) -> list[tuple[str, Callable[[], None], Callable[[], None], float]]:
    """(what, start, end, seconds): each silent cut lasts longer than a heartbeat lives."""

    def kill_redis() -> None:
        bed.stop("redis", sig=signal.SIGKILL)

    def start_redis() -> None:
        bed.restart("redis")
        bed.wait_for_redis()

    return [
        ("w1 cut", lambda: bed.cut("w1"), lambda: bed.restore("w1"), TTL_S + 4),
        ("redis cut (API, workers)", lambda: bed.cut("redis"), lambda: bed.restore("redis"), 12),
        ("storage cut", lambda: bed.cut("storage"), lambda: bed.restore("storage"), 6),
        ("w2 cut", lambda: bed.cut("w2"), lambda: bed.restore("w2"), TTL_S + 4),
        ("redis killed, restarted", kill_redis, start_redis, 6),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=0.1, help="submissions a second per API process")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--size", type=int, default=64, help="longest side of the pictures, px")
    parser.add_argument("--engine", default="nst_core.transfer:StyleTransfer")
    parser.add_argument("--retry-lost-jobs", type=int, default=1)
    parser.add_argument("--pause", type=float, default=8, help="seconds between cut-offs")
    args = parser.parse_args()
    reason = can_build()
    if reason:
        print(reason, file=sys.stderr)
        return 2
    for name in remove_leftovers():
        print(f"removed a crashed run's namespace {name}")
    bed = Bed(Path(tempfile.mkdtemp(prefix="nst-fleet-")))
    try:
        started = time.monotonic()
        bed.build()
        bed.start(
            engine=args.engine,
            heartbeat_interval_s=1,
            heartbeat_ttl_s=TTL_S,
            reaper_interval_s=1,
            retry_lost_jobs=args.retry_lost_jobs,
        )
        print(f"bed up in {time.monotonic() - started:.0f} s: {bed.root}", flush=True)
        submitters = [
            Submitter(bed, url, rate=args.rate, steps=args.steps, size=args.size, seed=i)
            for i, url in enumerate(bed.api_urls)
        ]
        started = time.monotonic()
        for submitter in submitters:
            submitter.start()
        for what, cut, restore, seconds in cut_offs(bed):
            time.sleep(args.pause)
            at = time.monotonic() - started
            cut()
            time.sleep(seconds)
            restore()
            print(f"{at:6.1f} s  {what} for {seconds} s", flush=True)
        time.sleep(args.pause)
        for submitter in submitters:
            submitter.stop.set()
            submitter.join()
        accepted = [job_id for s in submitters for job_id in s.accepted]
        refused = sum((s.refused for s in submitters), Counter())
        with bed.on("client"):
            store = bed.redis()

            def ended() -> bool:
                try:
                    return all(_terminal(store, job_id) for job_id in accepted)
                except Exception:  # Redis still coming back: ask again
                    return False

            wait_until(ended, timeout_s=600, what="every accepted job ended")
            elapsed = time.monotonic() - started
            with httpx.Client(base_url=bed.api_urls[0], timeout=30) as api:
                taken = ledger.take(store, api, accepted)
            attempts = Counter(_record(store, job_id).attempts for job_id in accepted)
        print(f"{len(accepted)} jobs in {elapsed:.0f} s; refused while cut: {dict(refused) or 0}")
        print(f"attempts per job: {dict(sorted(attempts.items()))}")
        print(taken.render())
        refused_badly = [code for code in refused if code not in ("503", "429") and not code.startswith("no answer")]
        healthy = accepted and not refused_badly and (taken.lost, taken.stuck, taken.stale_results) == (0, 0, 0)
        return 0 if healthy else 1
    finally:
        bed.close()


def _record(store, job_id: str) -> JobRecord:  # type: ignore[no-untyped-def]
    data = store.hgetall(Keys.job(job_id))
    return JobRecord.from_hash({k.decode(): v.decode() for k, v in data.items()})


def _terminal(store, job_id: str) -> bool:  # type: ignore[no-untyped-def]
    data = store.hgetall(Keys.job(job_id))
    return not data or _record(store, job_id).status.terminal


if __name__ == "__main__":
    sys.exit(main())
