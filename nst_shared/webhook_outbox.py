"""The webhook outbox: the events a job may report, the Redis keys deliveries wait in, and the body a delivery
sends. A job's transition script writes it (nst_shared/jobs.py); the workers deliver (worker/webhook_delivery.py).

A sender moves one delivery at a time from the pending list (nst_shared/keys.py) to a processing list of its own
and removes it there only once it is sent, given up or rescheduled on the retry set, so a sender that dies
mid-delivery loses nothing: its list goes back to the pending list (at least once).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

# completed: once, when the job ends; status: every status change; progress: while it runs, at a set pace
EVENTS = ("completed", "status", "progress")
# The job record fields a delivery carries, as the Lua table the scripts that write deliveries read them with.
RECORD_FIELDS = ("id", "status", "error", "created_at", "started_at", "finished_at", "params", "steps_done")
RECORD_FIELDS_LUA = "{" + ", ".join(f"'{name}'" for name in RECORD_FIELDS) + "}"


def _iso(value: float | None) -> str | None:
    return datetime.fromtimestamp(value, tz=UTC).isoformat() if value is not None else None


def delivery_body(delivery: dict[str, Any]) -> dict[str, Any]:
    """The JSON a delivery POSTs, from its outbox entry (the message id, URL, event, time, and the job's
    record fields as the transition left them): enough to act on without another request (the full job is
    at `links.self`)."""
    record = delivery["record"]

    def number(name: str) -> float | None:
        return float(record[name]) if record.get(name) else None

    base = f"/jobs/{record['id']}"
    return {
        "type": f"job.{delivery['event']}",
        "timestamp": _iso(float(delivery["at"])),
        "job": {
            "id": record["id"],
            "status": record["status"],
            "error": json.loads(record["error"]) if record.get("error") else None,
            "created_at": _iso(number("created_at")),
            "started_at": _iso(number("started_at")),
            "finished_at": _iso(number("finished_at")),
            "params": json.loads(record["params"]) if record.get("params") else {},
            "steps_done": int(record["steps_done"]) if record.get("steps_done") else None,
            "links": {"self": base, "events": f"{base}/events", "result": f"{base}/result"},
            **({"progress": delivery["progress"]} if "progress" in delivery else {}),
        },
    }
