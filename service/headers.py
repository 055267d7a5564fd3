"""Security headers on every answer: a Content-Security-Policy that allows only this origin, no framing, no
MIME sniffing and no Referer (signed `?token=` links must not leak to other sites).

The web page needs `blob:` (thumbnails of the chosen files) and `data:` images (the docs' CSS icons). The docs
pages start their viewers with inline scripts: each such page gets the SHA-256 of its own inline scripts (and
styles) added to its policy, computed from the page as it is sent, so a new docs package or a root path keeps
working without a list of hashes to maintain.
"""

from __future__ import annotations

import base64
import hashlib
import re

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

POLICY: dict[str, str] = {
    "default-src": "'none'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' blob: data:",
    "media-src": "'self' blob:",  # a clip's thumbnail (blob:) and its painted video (docs/video.md)
    "connect-src": "'self'",
    "font-src": "'self'",
    "manifest-src": "'self'",
    "base-uri": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}
# ReDoc renders with styled-components, which writes <style> elements at run time (no hash can match them;
# and a hash beside 'unsafe-inline' would void it, so it replaces the page's style hashes), and parses the
# schema in a web worker it starts from a blob: URL. Its scripts stay hash-only.
REDOC_EXTRA: dict[str, str] = {"style-src": "'unsafe-inline'", "worker-src": "blob:"}

HEADERS: dict[str, str] = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate CSP 2
}

_INLINE = {
    "script-src": re.compile(rb"<script>(.*?)</script>", re.S),
    "style-src": re.compile(rb"<style>(.*?)</style>", re.S),
}


def content_security_policy(extra: dict[str, str] | None = None) -> str:
    """The policy with `extra` sources appended to their directives."""
    directives = dict(POLICY)
    for name, sources in (extra or {}).items():
        directives[name] = f"{directives[name]} {sources}" if name in directives else sources
    return "; ".join(f"{name} {sources}" for name, sources in directives.items())


def inline_hashes(html: bytes) -> dict[str, str]:
    """'sha256-...' sources for every inline <script> and <style> of a page, by directive."""
    found = {}
    for directive, pattern in _INLINE.items():
        digests = [base64.b64encode(hashlib.sha256(body).digest()).decode() for body in pattern.findall(html)]
        if digests:
            found[directive] = " ".join(f"'sha256-{digest}'" for digest in digests)
    return found


class SecurityHeaders:
    """ASGI middleware: the headers above on every HTTP answer; the docs pages' policy names their inline code."""

    def __init__(self, app: ASGIApp, *, docs_paths: set[str], redoc_path: str | None = None) -> None:
        self.app = app
        self.docs_paths = set(docs_paths) | ({redoc_path} if redoc_path else set())
        self.redoc_path = redoc_path
        self.policy = content_security_policy()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope.get("path") in self.docs_paths:
            await self._docs_page(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                self._add(MutableHeaders(scope=message), self.policy)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _docs_page(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A few kilobytes of HTML: held until complete, so its policy can carry the hashes of its scripts.
        start: Message | None = None
        body = bytearray()

        async def hold(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] == "http.response.body":
                body.extend(message.get("body", b""))
                if message.get("more_body"):
                    return
                assert start is not None
                extra = inline_hashes(bytes(body))
                if scope.get("path") == self.redoc_path:
                    extra.update(REDOC_EXTRA)
                headers = MutableHeaders(scope=start)
                self._add(headers, content_security_policy(extra))
                headers["content-length"] = str(len(body))
                await send(start)
                await send({"type": "http.response.body", "body": bytes(body)})
                return
            await send(message)

        await self.app(scope, receive, hold)

    @staticmethod
    def _add(headers: MutableHeaders, policy: str) -> None:
        headers.setdefault("Content-Security-Policy", policy)
        for name, value in HEADERS.items():
            headers.setdefault(name, value)
