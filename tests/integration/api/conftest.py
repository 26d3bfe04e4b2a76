"""API tests: the application of `app.py`, driven by `chalice.test.Client`, on moto in-process.

The app is imported, never rebuilt: Chalice consumes a blueprint's registration arguments, so a
blueprint can be registered into only one app per process.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from chalice.test import Client
from moto import mock_aws

from functions import bootstrap
from functions.storage.models import DeliveryModel, PostbackModel
from tests.support.api_client import ADMIN, AFF_A, AFF_B, Api, auth, body_of, definition, token

__all__ = ["ADMIN", "AFF_A", "AFF_B", "Api", "auth", "body_of", "client", "definition", "token"]


@pytest.fixture
def client() -> Iterator[Api]:
    with mock_aws():
        PostbackModel.create_table(billing_mode="PAY_PER_REQUEST", wait=True)
        DeliveryModel.create_table(billing_mode="PAY_PER_REQUEST", wait=True)
        bootstrap.reset()
        from app import app

        with Client(app) as test_client:
            yield Api(test_client)
        bootstrap.reset()
