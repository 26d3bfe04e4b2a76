"""Settings of the local stack itself (ports, poller pacing), read from the environment in one place.

The system's own settings stay in `functions.settings`; these only shape how `python -m local.stack`
runs on a developer's machine.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

HOST = "127.0.0.1"
REGION = "us-east-1"
VITE_DEV_ORIGIN = "http://localhost:5173"

# Defaults `make run` relies on; each applies only where the variable is unset.
ENVIRONMENT_DEFAULTS: Mapping[str, str] = {
    "POSTBACKS_STAGE": "local",
    "POSTBACKS_LOCAL_MODE": "1",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
}


class LocalConfigError(ValueError):
    """A local-stack variable has a value the stack cannot run with."""


def _port(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = (environ.get(name) or "").strip() or str(default)
    if not raw.isdigit() or not 0 <= int(raw) < 65536:
        raise LocalConfigError(f"{name} must be a TCP port, got {raw!r}")
    return int(raw)


def _positive_float(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = (environ.get(name) or "").strip() or str(default)
    try:
        value = float(raw)
    except ValueError as exc:
        raise LocalConfigError(f"{name} must be a number, got {raw!r}") from exc
    if value <= 0:
        raise LocalConfigError(f"{name} must be > 0, got {value}")
    return value


def _flag(environ: Mapping[str, str], name: str) -> bool:
    raw = (environ.get(name) or "").strip().lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise LocalConfigError(f"{name} must be 1 or 0, got {raw!r}")


@dataclass(frozen=True)
class LocalConfig:
    moto_port: int = 5000
    api_port: int = 8000
    web_port: int = 8080
    host: str = HOST
    stream_poll_seconds: float = 0.1
    queue_wait_seconds: int = 1
    queue_pollers: int = 4
    moto_in_process: bool = False

    @property
    def moto_url(self) -> str:
        return f"http://{self.host}:{self.moto_port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    @property
    def web_url(self) -> str:
        return f"http://{self.host}:{self.web_port}"

    @property
    def default_cors_origins(self) -> str:
        """The page's origins (127.0.0.1 and localhost on WEB_PORT) and the Vite dev server's."""
        return f"{self.web_url},http://localhost:{self.web_port},{VITE_DEV_ORIGIN}"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> LocalConfig:
        env = os.environ if environ is None else environ
        pollers = int(_positive_float(env, "LOCAL_QUEUE_POLLERS", 4))
        return cls(
            moto_port=_port(env, "MOTO_PORT", 5000),
            api_port=_port(env, "API_PORT", 8000),
            web_port=_port(env, "WEB_PORT", 8080),
            stream_poll_seconds=_positive_float(env, "LOCAL_STREAM_POLL_SECONDS", 0.1),
            queue_wait_seconds=int(_positive_float(env, "LOCAL_QUEUE_WAIT_SECONDS", 1)),
            queue_pollers=max(1, pollers),
            moto_in_process=_flag(env, "LOCAL_MOTO_IN_PROCESS"),
        )


def apply_environment_defaults(
    environ: os._Environ[str] | dict[str, str], moto_url: str, cors_origins: str | None = None
) -> None:
    """Fill in the stack's defaults where unset, and point every AWS client of this process at moto."""
    defaults = dict(ENVIRONMENT_DEFAULTS)
    if cors_origins is not None:
        defaults["POSTBACKS_CORS_ORIGINS"] = cors_origins
    for name, value in defaults.items():
        if not (environ.get(name) or "").strip():
            environ[name] = value
    environ["AWS_ENDPOINT_URL"] = moto_url
