"""Test environment, set before anything imports the application.

pynamodb reads table names at import and caches connections on model classes, and a boto3
client created before moto is imported escapes the mock: so the environment is fixed here, at
the top, for every tier.
"""

from __future__ import annotations

import os

os.environ.update(
    {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        "POSTBACKS_STAGE": "test",
    }
)
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)

import moto  # noqa: E402,F401  (imported before any client exists)
