"""GET /metrics: Prometheus' text format (see `service.metrics` for what it holds)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

router = APIRouter(tags=["operations"])


@router.get("/metrics", summary="Prometheus metrics: jobs, queue, workers, durations, seconds per iteration",
            response_class=Response, operation_id="get_metrics", responses={200: {
                "description": "Prometheus' text format", "content": {"text/plain": {"schema": {"type": "string"}}}}})
def get_metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST)
