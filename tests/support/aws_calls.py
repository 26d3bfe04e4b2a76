"""Hooks on the botocore clients the product uses, for tests that count AWS requests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from functions.storage.models import DeliveryModel, PostbackModel


@contextmanager
def on_every_aws_call(handler: Callable[..., None], *extra_clients: Any) -> Iterator[None]:
    """While open, call `handler(model=<operation model>, params=..., ...)` before every request of
    the tables' pynamodb clients and of `extra_clients` (e.g. the SQS client), each hooked once."""
    clients = {
        id(client): client
        for client in (
            PostbackModel._get_connection().connection.client,
            DeliveryModel._get_connection().connection.client,
            *extra_clients,
        )
    }
    for client in clients.values():
        client.meta.events.register("before-call.*.*", handler)
    try:
        yield
    finally:
        for client in clients.values():
            client.meta.events.unregister("before-call.*.*", handler)
