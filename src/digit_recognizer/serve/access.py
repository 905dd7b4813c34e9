"""An optional API key (``digits serve --api-key KEY`` or ``DIGITS_API_KEY``).

With a key, every route under ``/api/`` except the health checks answers 401
unless the request carries it, as ``Authorization: Bearer KEY`` or ``X-API-Key:
KEY``. The drawing page, its static files, ``/docs`` and ``/metrics`` stay open:
the page's own predictions then need the key (the page shows the 401 message), so
a server with a key is one for programs; Prometheus scrapes ``/metrics`` inside
the network, like the load balancer's health checks.
"""

from __future__ import annotations

import hmac

from fastapi.responses import JSONResponse

OPEN_ROUTES = ("/api/health", "/api/ready")


def presented_key(headers: dict[bytes, bytes]) -> bytes | None:
    """The key a request carries (raw ASGI headers), or None."""
    authorization = headers.get(b"authorization", b"")
    scheme, _, token = authorization.partition(b" ")
    if scheme.lower() == b"bearer" and token.strip():
        return token.strip()
    return headers.get(b"x-api-key")


class ApiKey:
    """ASGI middleware: 401 for an ``/api/`` request without the key, before its body is read."""

    def __init__(self, app, key: str):
        if not key:
            raise ValueError("an empty API key would let everyone in")
        self.app, self.key = app, key.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and self._guarded(scope["path"]):
            key = presented_key(dict(scope["headers"]))
            # compare_digest: the time taken says nothing about how much of the key matched
            if key is None or not hmac.compare_digest(key, self.key):
                refusal = JSONResponse({"error": "this server needs an API key: send it as "
                                                 "'Authorization: Bearer KEY' or 'X-API-Key: KEY'"},
                                       status_code=401, headers={"WWW-Authenticate": "Bearer"})
                return await refusal(scope, receive, send)
        return await self.app(scope, receive, send)

    @staticmethod
    def _guarded(path: str) -> bool:
        return path.startswith("/api/") and path.rstrip("/") not in OPEN_ROUTES


def document(app) -> None:
    """Declare the key in the app's OpenAPI schema, so that /docs offers to send it."""
    build = app.openapi

    def openapi_with_key():
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {})["securitySchemes"] = {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}
            for path, operations in schema.get("paths", {}).items():
                if ApiKey._guarded(path):
                    for operation in operations.values():
                        operation["security"] = [{"apiKey": []}]
        return app.openapi_schema

    app.openapi = openapi_with_key
