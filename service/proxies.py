"""Warns once when a request names a client in X-Forwarded-For but comes from a peer not in NST_TRUSTED_PROXIES:
behind such a proxy every client shares the proxy's address (rate limits, wrong-key lockouts)."""

from __future__ import annotations

import ipaddress
import logging

from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("nst.api")


def is_trusted(peer: str, trusted: list[str]) -> bool:
    """True when `peer` is one of the trusted addresses or inside one of their networks ("*": any)."""
    if "*" in trusted:
        return True
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return peer in trusted
    for entry in trusted:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


class UntrustedForwardWarning:
    """ASGI middleware, outside the proxy-headers one (so it sees the real peer): one warning per process."""

    def __init__(self, app: ASGIApp, *, trusted: list[str]) -> None:
        self.app, self.trusted, self.warned = app, trusted, False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.warned and scope["type"] in ("http", "websocket"):
            peer = (scope.get("client") or ("", 0))[0]
            if any(name == b"x-forwarded-for" for name, _ in scope.get("headers") or []) and not is_trusted(
                peer, self.trusted
            ):
                self.warned = True
                log.warning(
                    "a request from %s carries X-Forwarded-For, but %s is not in NST_TRUSTED_PROXIES: the header is "
                    "ignored, and every client behind that proxy shares its address for rate limits and wrong-key "
                    "lockouts (docs/deployment.md); this is said once",
                    peer,
                    peer,
                )
        await self.app(scope, receive, send)
