"""The uvicorn configuration of the console: proxy headers only from explicitly trusted proxies."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import uvicorn
    from starlette.types import ASGIApp


def server_config(app: ASGIApp, host: str, port: int, trusted_proxies: tuple[str, ...]) -> uvicorn.Config:
    """Uvicorn for ``app``; X-Forwarded-* are read only from ``trusted_proxies`` (none: never).

    uvicorn's own default trusts 127.0.0.1 (or ``FORWARDED_ALLOW_IPS``), which would let anyone
    reaching the console through an SSH tunnel choose the address its login limit counts against.
    """
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        server_header=False,
        proxy_headers=bool(trusted_proxies),
        forwarded_allow_ips=list(trusted_proxies),
    )
