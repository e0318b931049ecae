"""What a route changes in the request it sends upstream: ``rewrite-target``, ``upstream-vhost``,
``x-forwarded-prefix`` (and ``ingressd chp``'s target paths). Called only for routes whose options say so (``RouteOptions.edits_request``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..routing import normalize_path

if TYPE_CHECKING:
    from ..annotations import RouteOptions


def edit_request(options: RouteOptions, url: bytes, raw_host: bytes) -> tuple[bytes, bytes, bytes]:
    """(request target, Host, extra field lines) for the upstream."""
    extra = b""
    if options.path_edit is not None:  # ingressd chp: the target's path, --no-include-prefix
        url = options.path_edit.apply(url)
    rewrite = options.rewrite
    if rewrite is not None:
        raw_path, _, query = url.partition(b"?")
        path = normalize_path(raw_path.decode("utf-8", "surrogateescape"))
        if path is not None:
            try:
                rewritten = rewrite.apply(path, query.decode("latin-1"))
            except UnicodeEncodeError:  # undecodable bytes: RE2 takes text; leave the target as sent
                rewritten = None
            if rewritten is not None:
                url = rewritten
    if options.upstream_host is not None:
        raw_host = options.upstream_host
    if options.forwarded_prefix is not None:
        extra = b"X-Forwarded-Prefix: " + options.forwarded_prefix + b"\r\n"
    return url, raw_host, extra
