"""CHP's error pages: what ``ingressd chp`` answers when no route matches (404) or a target fails (503).

As CHP (lib/configproxy.js ``handleProxyError``):
- ``--error-target URL``: ``GET URL/CODE?url=REQUEST_TARGET`` is asked for the page; its body, its
  Content-Type and Content-Encoding are sent with the original status. If that request fails, the
  built-in answer is sent.
- ``--error-path DIR``: ``DIR/CODE.html``, else ``DIR/error.html``, as ``text/html`` (read once at
  start: a page edited later needs a restart; a missing file falls back as in CHP).
- neither: ingressd's own short HTML page per status (CHP has its own, in its lib/error); the
  status phrase for any other status and when a page cannot be had, as CHP.
Every failure of a target (refused, reset, timed out, an unusable response) is a 503, as in CHP; a
websocket upgrade gets the bare status line.
"""

from __future__ import annotations

import asyncio
import logging
import os
from urllib.parse import quote, urlsplit

from httptools import HttpParserError, HttpResponseParser

from ..dataplane import responses
from .targets import RouteError, Target, TargetTLS

log = logging.getLogger("ingressd.chp")

ERROR_FETCH_TIMEOUT = 10.0  # seconds for the whole error page from --error-target
MAX_ERROR_PAGE = 1 << 20  # bytes; a larger page is cut off at this size
_KEPT_HEADERS = (b"content-type", b"content-encoding")
_BUILT_IN = {
    404: "No route is registered for this URL.",
    503: "The server this URL is routed to did not answer.",
}


def built_in_page(status: int) -> bytes | None:
    text = _BUILT_IN.get(status)
    if text is None:
        return None
    title = f"{status}: {responses.reason(status).decode()}"
    return (f'<!doctype html>\n<html>\n<head><meta charset="utf-8"><title>{title}</title></head>\n'
            f"<body>\n<h1>{title}</h1>\n<p>{text}</p>\n<hr>\n<p>ingressd chp</p>\n</body>\n</html>\n").encode()


class ErrorPages:
    """The bodies of a CHP route's errors (``RouteOptions.error_pages``): ``serve`` answers an exchange."""

    __slots__ = ("target", "pages", "insecure", "_tls")

    def __init__(self, target: str | None = None, path: str | None = None, insecure: bool = False):
        self.target = target.rstrip("/") + "/" if target else None
        self.insecure = insecure
        self._tls = None
        if self.target:
            try:
                parsed = Target.parse(self.target)
            except RouteError as error:
                raise ValueError(f"--error-target: {error}") from None
            if parsed.scheme == "https":
                self._tls = TargetTLS(parsed.host, insecure)
        self.pages: dict[str, bytes] = _read_pages(path) if path else {}

    def __reduce__(self):  # pages are read again where unpickled (ingressd chp is one process)
        return _rebuild, (self.target, self.insecure, self.pages)

    def serve(self, exchange, status: int) -> None:
        """Answer ``exchange`` (being served, nothing sent yet) with the page for ``status``."""
        status = 503 if status >= 500 else status
        if exchange.upgrade:
            exchange.answer(status, b"")
            return
        if self.target is not None:
            asyncio.get_running_loop().create_task(self._fetch_and_answer(exchange, status))
            return
        if self.pages:
            page = self.pages.get(str(status), self.pages.get("error"))
        else:
            page = built_in_page(status)
        if page is not None:
            exchange.answer(status, page, content_type=b"text/html")
        else:
            exchange.answer(status, responses.reason(status))

    async def _fetch_and_answer(self, exchange, status: int) -> None:
        url = self.target + str(status) + "?url=" + quote(exchange.url.decode("latin-1"), safe="/")
        try:
            fields, body = await asyncio.wait_for(self._fetch(url), ERROR_FETCH_TIMEOUT)
        except (OSError, asyncio.TimeoutError, HttpParserError, ValueError) as error:
            log.error("Failed to get custom error page %s: %s", url, error or type(error).__name__)
            fields, body = b"", responses.reason(status)
        if exchange.aborted or exchange.response_done:
            return
        typed = b"content-type:" in fields.lower()
        exchange.answer(status, body, fields, content_type=b"" if typed else None)

    async def _fetch(self, url: str) -> tuple[bytes, bytes]:
        parts = urlsplit(url)
        target = Target.parse(url)
        request_target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
        tls = self._tls
        reader, writer = await asyncio.open_connection(
            target.host, target.port, ssl=tls.context if tls else None,
            server_hostname=tls.server_name if tls else None)
        try:
            writer.write(f"GET {request_target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                         f"Connection: close\r\n\r\n".encode("latin-1"))
            page = _Page()
            parser = HttpResponseParser(page)
            while not page.complete:
                data = await reader.read(65536)
                if not data:
                    parser.feed_data(b"")  # end of a body framed by closing
                    break
                parser.feed_data(data)
                if page.size > MAX_ERROR_PAGE:
                    break
            return page.fields, b"".join(page.body)[:MAX_ERROR_PAGE]
        finally:
            writer.close()


class _Page:
    """httptools callbacks collecting an error page's kept headers and body."""

    def __init__(self):
        self.fields = b""
        self.body: list[bytes] = []
        self.size = 0
        self.complete = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() in _KEPT_HEADERS:
            self.fields += name + b": " + value + b"\r\n"

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True


def _read_pages(path: str) -> dict[str, bytes]:
    """``CODE.html`` and ``error.html`` files of ``--error-path``, by code ("404") or "error"."""
    if not os.path.isdir(path):
        raise ValueError(f"--error-path {path}: not a directory")
    pages = {}
    for name in os.listdir(path):
        stem, ext = os.path.splitext(name)
        if ext == ".html" and (stem.isdigit() or stem == "error"):
            with open(os.path.join(path, name), "rb") as handle:
                pages[stem] = handle.read()
    return pages


def _rebuild(target, insecure, pages):
    pages_obj = ErrorPages(target, None, insecure)
    pages_obj.pages = pages
    return pages_obj
