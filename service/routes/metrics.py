"""GET /metrics: Prometheus' text format (see `service.metrics_registry` for what it holds)."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.auth import presented_key
from service.errors import ApiError
from service.openapi import error_responses

router = APIRouter(tags=["operations"])


def check_scraper(request: Request) -> None:
    """NST_METRICS_TOKEN when set; otherwise an API key while keys are on (the numbers say how busy the
    service is and how many workers it has: no stranger's business once the service is closed); else open."""
    token: str = request.app.state.settings.metrics_token
    presented = presented_key(request)
    if token:
        allowed = presented is not None and hmac.compare_digest(presented.encode(), token.encode())
    elif request.app.state.keys.enabled:
        allowed = presented is not None and request.app.state.keys.owner(presented) is not None
    else:
        return
    if not allowed:
        raise ApiError(
            401,
            "metrics_token_required",
            "GET /metrics needs Authorization: Bearer <token> (the "
            "metrics token, or an API key when no metrics token is set)",
            headers={"WWW-Authenticate": 'Bearer realm="nst-metrics"'},
        )


@router.get(
    "/metrics",
    summary="Prometheus metrics: jobs, queue, workers, durations, seconds per iteration",
    response_class=Response,
    operation_id="get_metrics",
    responses={
        200: {"description": "Prometheus' text format", "content": {"text/plain": {"schema": {"type": "string"}}}},
        **error_responses(401),
    },
)
def get_metrics(request: Request) -> Response:
    check_scraper(request)
    return Response(generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST)
