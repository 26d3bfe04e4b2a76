"""Links the API hands out (`Location`), as the client must request them.

In AWS the client's path carries what API Gateway strips before the app sees it: the stage
(`/api/postbacks` → resource `/postbacks`) or a custom domain's base path. API Gateway reports the
client's path in `requestContext.path` and the resource path in `path`; the difference is the
prefix every link needs. Locally (`chalice local`) both are the same and links stay as they are.
"""

from __future__ import annotations

from typing import Any

from chalice.app import Request


def path_prefix(event: dict[str, Any]) -> str:
    """What precedes the app's paths in the client's URL ("" when nothing does)."""
    context = event.get("requestContext")
    client_path = context.get("path") if isinstance(context, dict) else None
    app_path = event.get("path")
    if not isinstance(client_path, str) or not isinstance(app_path, str) or not app_path:
        return ""
    if client_path == app_path or not client_path.endswith(app_path):
        return ""
    return client_path[: -len(app_path)].rstrip("/")


def public_path(request: Request, path: str) -> str:
    """`path` (e.g. `/postbacks/pb_1`) as the client addresses it, stage or base path included."""
    return path_prefix(request.to_original_event()) + path
