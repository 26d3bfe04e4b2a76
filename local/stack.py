"""`python -m local.stack` (`make run`): the whole system on loopback, in the foreground (docs/contract.md §8).

1. A moto server on 127.0.0.1:MOTO_PORT (default 5000), in a child process of its own
   (`local.moto_server`; `LOCAL_MOTO_IN_PROCESS=1` keeps it in this one); this process's AWS
   clients point at it.
2. The tables and queues of `infrastructure/template.json`, created through
   `infrastructure.resources` (the same definitions as the AWS stack).
3. The API on 127.0.0.1:API_PORT (default 8000), served by Chalice's local server
   (`local.api_server`), and the Postbacks page (web/dist, built by `make run` through
   `local.web_build`) with its runtime config on 127.0.0.1:WEB_PORT (default 8080)
   (`local.web_server`). POSTBACKS_CORS_ORIGINS defaults to the page's origins and Vite's dev server.
4. Two pollers standing in for Lambda's event source mappings, configured from the template:
   conversions stream -> the evaluator, deliveries queue -> the sender, each invoked by its
   handler string as Lambda invokes it.

It prints an admin token, the page's `Web: http://127.0.0.1:<WEB_PORT>/#token=<token>` link, then
`ready` on a line of its own once moto, the API, the page's server and both pollers
answer. SIGINT (Ctrl-C) and SIGTERM stop the pollers and servers and exit 0.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from local.config import LocalConfig, LocalConfigError, apply_environment_defaults

ROOT = Path(__file__).resolve().parent.parent
CHALICE_CONFIG = ROOT / ".chalice" / "config.json"
STAGE = "local"
READY_TIMEOUT_SECONDS = 60.0

logger = logging.getLogger("local.stack")


class StackError(RuntimeError):
    """The local stack could not start."""


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError):
        return False


def _chalice_config() -> dict[str, Any]:
    with open(CHALICE_CONFIG, encoding="utf-8") as handle:
        config: dict[str, Any] = json.load(handle)
    return config


def function_settings(disk_config: dict[str, Any], function_name: str, stage: str = STAGE) -> tuple[float, int]:
    """(timeout seconds, memory MB) of a function, resolved as Chalice resolves its config."""
    timeout: float = float(disk_config.get("lambda_timeout", 60))
    memory = int(disk_config.get("lambda_memory_size", 128))
    stage_config = disk_config.get("stages", {}).get(stage, {})
    for layer in (
        disk_config.get("lambda_functions", {}).get(function_name, {}),
        stage_config,
        stage_config.get("lambda_functions", {}).get(function_name, {}),
    ):
        timeout = float(layer.get("lambda_timeout", timeout))
        memory = int(layer.get("lambda_memory_size", memory))
    return timeout, memory


@dataclass
class RunningStack:
    moto: Any
    api_server: Any
    api_thread: threading.Thread
    pollers: list[Any]
    web: Any

    def stop(self) -> None:
        for poller in self.pollers:
            poller.stop()
        self.web.stop()
        self.api_server.shutdown()
        self.api_thread.join(5)
        self.moto.stop()


def start(config: LocalConfig) -> RunningStack:
    for name, port in (("MOTO_PORT", config.moto_port), ("API_PORT", config.api_port), ("WEB_PORT", config.web_port)):
        if not _port_is_free(config.host, port):
            raise StackError(f"{name}={port}: {config.host}:{port} is already in use")

    # Before anything creates a client or imports a pynamodb model.
    apply_environment_defaults(os.environ, config.moto_url, config.default_cors_origins)
    for noisy in ("werkzeug", "botocore", "pynamodb"):
        logging.getLogger(noisy).setLevel(logging.WARNING if noisy != "werkzeug" else logging.ERROR)

    from local.moto_server import MotoProcess, MotoProcessError, MotoServer

    moto: MotoProcess | MotoServer
    if config.moto_in_process:
        moto = MotoServer(config.host, config.moto_port)
        moto.start()
        logger.info("moto server on %s (in this process)", config.moto_url)
    else:
        moto = MotoProcess(config.host, config.moto_port)
        try:
            moto.start()
        except MotoProcessError as exc:
            raise StackError(str(exc)) from exc
        logger.info("moto server on %s (process %s)", config.moto_url, moto.pid)

    import boto3

    from functions.settings import SettingsError, load_settings
    from infrastructure.resources import create_all, event_source_properties

    try:
        settings = load_settings()
    except SettingsError as exc:
        moto.stop()
        raise StackError(str(exc)) from exc
    dynamodb = boto3.client("dynamodb")
    sqs = boto3.client("sqs")
    created = create_all(dynamodb, sqs, settings)
    logger.info(
        "tables %s and queues %s created from infrastructure/template.json",
        ", ".join(created.tables.values()),
        ", ".join(url.rsplit("/", 1)[-1] for url in created.queue_urls.values()),
    )
    if settings.allow_private_targets:
        logger.warning(
            "POSTBACKS_ALLOW_PRIVATE_TARGETS: private targets are allowed: %s",
            ", ".join(str(network) for network in settings.allow_private_targets),
        )
    else:
        logger.info("POSTBACKS_ALLOW_PRIVATE_TARGETS: no private targets allowed (local receivers will be refused)")

    from functions import bootstrap
    from functions.logs import readable_metrics

    # The handlers' EMF lines, which CloudWatch turns into metrics, printed readably here.
    metrics_logger = logging.getLogger("metrics")
    bootstrap.reset(metrics_writer=lambda line: metrics_logger.info(readable_metrics(line)))

    from chalice.app import DynamoDBEventConfig, SQSEventConfig
    from chalice.config import Config
    from chalice.utils import to_cfn_resource_name

    from local.api_server import create_api_server
    from local.lambda_runtime import LocalFunction
    from local.pollers import QueueMapping, QueuePoller, StreamMapping, StreamPoller

    sys.path.insert(0, str(ROOT))
    import app as application_module

    chalice_app = application_module.app
    disk_config = _chalice_config()
    chalice_config = Config(
        chalice_stage=STAGE,
        user_provided_params={"chalice_app": chalice_app, "project_dir": str(ROOT)},
        config_from_disk=disk_config,
        default_params={"api_gateway_stage": "api", "autogen_policy": False},
    )
    api_server = create_api_server(chalice_app, chalice_config, config.host, config.api_port)
    api_server.server.daemon_threads = True  # idle keep-alive connections must not hold up the exit
    api_thread = threading.Thread(target=api_server.server.serve_forever, name="api", daemon=True)
    api_thread.start()
    logger.info("API on %s", config.api_url)
    logger.info("POSTBACKS_CORS_ORIGINS: %s", ", ".join(sorted(settings.cors_origins)) or "none")

    from local.web_server import WebServer

    web = WebServer(config.host, config.web_port, config.api_url)
    web.start()
    logger.info("the Postbacks page on %s (web/dist)", config.web_url)

    pollers: list[Any] = []
    for source in chalice_app.event_sources:
        timeout, memory = function_settings(disk_config, source.name)
        function = LocalFunction(source.name, source.handler_string, timeout, memory)
        props = event_source_properties(to_cfn_resource_name(source.name))
        if isinstance(source, DynamoDBEventConfig):
            streams = boto3.client("dynamodbstreams")
            if created.conversions_stream_arn is None:
                raise StackError("the conversions table has no stream")
            pollers.append(
                StreamPoller(
                    streams,
                    created.conversions_stream_arn,
                    function,
                    StreamMapping.from_properties(props),
                    sqs=sqs,
                    on_failure_queue_url=created.queue_urls["EvaluatorDeadLetterQueue"],
                    poll_seconds=config.stream_poll_seconds,
                )
            )
            logger.info("stream poller: %s -> %s", settings.conversions_table, source.handler_string)
        elif isinstance(source, SQSEventConfig):
            pollers.append(
                QueuePoller(
                    sqs,
                    created.queue_urls["DeliveriesQueue"],
                    function,
                    QueueMapping.from_properties(props),
                    workers=config.queue_pollers,
                    wait_seconds=config.queue_wait_seconds,
                )
            )
            logger.info("queue poller: %s -> %s", settings.deliveries_queue, source.handler_string)
    if len(pollers) != 2:
        raise StackError(f"expected a stream and a queue handler in app.py, found {len(pollers)} event sources")
    for poller in pollers:
        poller.start()
    return RunningStack(moto=moto, api_server=api_server, api_thread=api_thread, pollers=pollers, web=web)


def wait_until_ready(config: LocalConfig, stack: RunningStack, timeout: float = READY_TIMEOUT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    checks: dict[str, Callable[[], bool]] = {
        "moto": lambda: _http_ok(f"{config.moto_url}/moto-api/data.json"),
        "api": lambda: _http_ok(f"{config.api_url}/health"),
        "web": lambda: _http_ok(f"{config.web_url}/config.json"),
        "pollers": lambda: all(p.ready.is_set() and p.is_alive() for p in stack.pollers),
    }
    pending = dict(checks)
    while pending:
        for name, check in list(pending.items()):
            if check():
                del pending[name]
        if pending and time.monotonic() > deadline:
            raise StackError(f"not ready after {timeout:.0f} s: {', '.join(pending)} not answering")
        if pending:
            time.sleep(0.1)


def main() -> int:
    # The functions' event lines as Lambda's JSON has them, one readable line each (functions.logs).
    from functions.logs import ReadableFormatter

    console = logging.StreamHandler()
    console.setFormatter(ReadableFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[console])
    try:
        config = LocalConfig.from_environ()
    except LocalConfigError as exc:
        print(f"local stack: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("%s received, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        stack = start(config)
    except StackError as exc:
        print(f"local stack: {exc}", file=sys.stderr)
        return 1
    try:
        wait_until_ready(config, stack)
        from functions.settings import load_settings
        from local.tokens import admin_token

        token = admin_token(load_settings())
        print(f"API:         {config.api_url}", flush=True)
        print(f"AWS endpoint: {config.moto_url} (region us-east-1, credentials 'testing')", flush=True)
        print(f"Admin token (12 h): {token}", flush=True)
        print(f"  curl -H 'Authorization: Bearer {token}' {config.api_url}/postbacks", flush=True)
        print(f"Web: {config.web_url}/#token={token}", flush=True)
        print("ready", flush=True)
        while not stop.is_set():
            stop.wait(0.5)
    except StackError as exc:
        print(f"local stack: {exc}", file=sys.stderr)
        stack.stop()
        return 1
    stack.stop()
    logger.info("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
