"""Which URLs a job's webhook may call: http(s) to public addresses, unless NST_WEBHOOK_ALLOW permits others
(the SSRF check, made at submission and again before every delivery)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

Resolver = Callable[..., list[tuple[Any, ...]]]  # socket.getaddrinfo's shape


class WebhookRefused(ValueError):
    """Raised when a webhook URL may not be called: not http(s), no host, a host that does not resolve, or
    one that resolves to a private, loopback, link-local, multicast or reserved address not allowed."""

    code = "webhook_refused"


@dataclass(frozen=True)
class Target:
    """A checked webhook URL and the addresses it resolved to (connect to these, not to a new lookup)."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]


def _public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback
    # is_global is False for private, loopback, link-local, reserved, unspecified and shared (100.64/10)
    # ranges; multicast addresses can be "global", so they are refused separately.
    return ip.is_global and not ip.is_multicast


def _allowed(host: str, address: str, allow: Iterable[str]) -> bool:
    ip = ipaddress.ip_address(address)
    for entry in allow:
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry == host.lower():
            return True
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:  # a host name that is not this one
            continue
    return False


def check_url(url: str, *, allow: Iterable[str] = (), resolver: Resolver = socket.getaddrinfo) -> Target:
    """Resolve `url`'s host and accept it when every address is public, or allowed by `allow` (host names
    or CIDRs, e.g. `["127.0.0.1/32", "hooks.internal"]`).

    Called when a job is submitted and again before every delivery, since DNS may have changed since."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookRefused("the webhook must be an http or https URL with a host")
    if parts.username or parts.password:
        raise WebhookRefused("the webhook URL may not carry a user name or password")
    host = parts.hostname
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise WebhookRefused("the webhook URL has an invalid port") from None
    try:
        infos = resolver(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise WebhookRefused(f"the webhook host {host!r} does not resolve") from None
    addresses = tuple(sorted({str(info[4][0]).split("%")[0] for info in infos}))
    if not addresses:
        raise WebhookRefused(f"the webhook host {host!r} does not resolve")
    allow = list(allow)
    for address in addresses:
        if not _public(ipaddress.ip_address(address)) and not _allowed(host, address, allow):
            raise WebhookRefused(
                f"the webhook host {host!r} resolves to a private, loopback or reserved "
                f"address ({address}); the service's NST_WEBHOOK_ALLOW may permit it"
            )
    return Target(url=url, scheme=parts.scheme, host=host, port=port, addresses=addresses)
