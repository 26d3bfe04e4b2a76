"""`python -m functions.cli`: the on-call tools (docs/contract.md §7; docs/cli.md, runbook in docs/runbook.md).

Trigger: an engineer at a terminal. Contract: `main(argv) -> int`; human tables on stdout,
`--json` for scripts, progress and errors on stderr. Exit codes (`ExitCode`): 0 success, 1 failure
(AWS error, not found), 2 usage (bad arguments, missing confirmation), 3 partial (some selected
items were skipped or failed; a re-run picks them up). Installed as the `postbacks` script
(`pip install .[oncall]`). Resource names come from `functions.settings`, or from a CloudFormation
stack's outputs with `--stack NAME`; `AWS_ENDPOINT_URL=http://127.0.0.1:5000` points the tools at
`make run` (with the local stack's credentials when none are set).
The queues, the deliveries table and the stream reader come from `functions.bootstrap`.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum
from typing import TextIO

from botocore.exceptions import BotoCoreError, ClientError

from functions import bootstrap
from functions import settings as settings_module
from functions.cli.arguments import QueueName, UsageError, build_parser, selection
from functions.cli.conversions import ConversionDeadLetters
from functions.cli.deliveries import DeliveryDeadLetters, Recovery
from functions.cli.dlq import RedriveReport, Result, RunOptions
from functions.cli.hosts import hosts_view
from functions.cli.output import Progress, render_json
from functions.cli.pacing import Pacer
from functions.cli.stack import StackResources, read_outputs, stack_resources, use_local_credentials
from functions.cli.status import StatusSources, read_status, status_view
from functions.cli.timeargs import TimeArgumentError
from functions.cli.views import (
    View,
    delivery_list_view,
    delivery_show_view,
    evaluator_list_view,
    evaluator_show_view,
    report_view,
    stats_view,
)
from functions.core.host_pause import HostState
from functions.core.model import utc_now
from functions.core.redrive import DeadLetterFilter
from functions.settings import SettingsError, load_settings


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1  # an AWS error, not found, configuration
    USAGE = 2  # bad arguments, missing confirmation
    PARTIAL = 3  # some selected items were skipped or failed; a re-run picks them up
    INTERRUPTED = 130  # Ctrl-C


@dataclass
class Services:
    """What the commands work on; `build_services` wires the real ones, tests may pass their own."""

    deliveries: DeliveryDeadLetters
    conversions: ConversionDeadLetters
    recovery: Recovery
    clock: Callable[[], datetime]
    # Hosts with a pause (`hosts`); None: the deliveries table's repository of `functions.bootstrap`.
    paused_hosts: Callable[[], list[HostState]] | None = None
    # What `status` reads (queues, CloudWatch, the deliveries table); None: no `status`.
    status: StatusSources | None = None


# `status` counts the deliveries of this window.
STATUS_WINDOW = timedelta(hours=1)


def resolve_stack(stack_name: str) -> StackResources:
    """The stack's names over the environment's settings (one DescribeStacks), wired into `functions.bootstrap`."""
    bootstrap.reset(client_limits=bootstrap.TERMINAL_CLIENT_LIMITS)
    outputs = read_outputs(bootstrap.cloudformation_client(), stack_name)
    return stack_resources(stack_name, outputs, bootstrap.settings())


def build_services(stack: StackResources | None = None) -> Services:
    """The commands' services over the queues, table and stream reader of `functions.bootstrap`, set up
    for a terminal: the AWS clients wait longer and retry more than a Lambda's. With `stack`, its
    names replace the environment's. Replays of evaluator records run the real handler: their EMF
    lines are not CloudWatch's here, so they are dropped (the run's report counts what was replayed)."""
    from functions.storage.delivery_sample import DeliverySampler
    from functions.storage.models import bind_table_names

    bootstrap.reset(
        stack.settings if stack is not None else None,
        client_limits=bootstrap.TERMINAL_CLIENT_LIMITS,
        metrics_writer=lambda _line: None,
    )
    config = bootstrap.settings()
    if stack is not None:
        bind_table_names(config.postbacks_table, config.deliveries_table)
    repository = bootstrap.delivery_repository()
    deliveries_queue = bootstrap.deliveries_queue()
    deliveries = DeliveryDeadLetters(bootstrap.deliveries_dlq(), deliveries_queue, repository)
    conversions = ConversionDeadLetters(
        bootstrap.evaluator_dlq(),
        stream_arn=(stack.conversions_stream_arn if stack else None) or settings_module.CONVERSIONS_STREAM_ARN,
        region=config.region,
        streams=bootstrap.stream_range_reader(),
    )
    paused_hosts = bootstrap.host_repository().paused_hosts
    return Services(
        deliveries=deliveries,
        conversions=conversions,
        recovery=Recovery(deliveries_queue, repository, run_id=uuid.uuid4().hex),
        clock=utc_now,
        paused_hosts=paused_hosts,
        status=StatusSources(
            stage=config.stage,
            queues=(
                ("deliveries", deliveries_queue),
                ("deliveries DLQ", bootstrap.deliveries_dlq()),
                ("evaluator DLQ", bootstrap.evaluator_dlq()),
            ),
            cloudwatch=bootstrap.cloudwatch_client,
            sampler=DeliverySampler(),
            paused_hosts=paused_hosts,
            dlq_stats=(deliveries.stats, conversions.stats),
        ),
    )


class Command:
    def __init__(self, services: Services, args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> None:
        self.services = services
        self.args = args
        self.stdout = stdout
        self.stderr = stderr

    def progress(self, label: str, total: int | None = None) -> Progress:
        enabled = bool(getattr(self.args, "progress", False)) or self.stderr.isatty()
        return Progress(label, self.stderr, enabled, total)

    def emit(self, view: View) -> None:
        value, text = view
        print(render_json(value) if self.args.json else text, file=self.stdout)

    def run_options(self, label: str) -> RunOptions:
        return RunOptions(
            limit=self.args.limit,
            pacer=Pacer(getattr(self.args, "rate", None)),
            dry_run=self.args.dry_run,
            progress=self.progress(label),
        )

    def _selection(self) -> DeadLetterFilter:
        return selection(self.args, self.services.clock())

    def _on_evaluator_queue(self) -> bool:
        return bool(self.args.queue == QueueName.EVALUATOR)

    def dlq_stats(self) -> ExitCode:
        queues = [self.args.queue] if self.args.queue else list(QueueName)
        results = []
        for name in queues:
            target = self.services.conversions if name == QueueName.EVALUATOR else self.services.deliveries
            results.append(target.stats(self.progress(f"scanning {target.queue_name}")))
        self.emit(stats_view(results))
        return ExitCode.OK

    def dlq_list(self) -> ExitCode:
        chosen, limit, progress = self._selection(), self.args.limit, self.progress("scanning")
        if self._on_evaluator_queue():
            self.emit(evaluator_list_view(self.services.conversions.entries(chosen, limit, progress)))
        else:
            self.emit(delivery_list_view(self.services.deliveries.entries(chosen, limit, progress)))
        return ExitCode.OK

    def dlq_show(self) -> ExitCode:
        identifier = self.args.id
        if self._on_evaluator_queue():
            found = self.services.conversions.find(identifier)
            if found is None:
                print(f"error: no message {identifier!r} in {self.services.conversions.queue_name}", file=self.stderr)
                return ExitCode.FAILURE
            self.emit(evaluator_show_view(found))
            return ExitCode.OK
        entry = self.services.deliveries.find(identifier)
        delivery_id = entry.delivery_id if entry is not None else identifier
        record = self.services.deliveries.record(delivery_id) if delivery_id else None
        if entry is None and record is None:
            print(
                f"error: {identifier!r} is neither a message in {self.services.deliveries.queue_name} "
                "nor a delivery id in the deliveries table",
                file=self.stderr,
            )
            return ExitCode.FAILURE
        self.emit(delivery_show_view(entry, record))
        return ExitCode.OK

    def dlq_redrive(self) -> ExitCode:
        chosen = self._selection()
        if self._on_evaluator_queue():
            run, verb, label = self.services.conversions.replay, "replay", "replaying"
        else:
            run, verb, label = self.services.deliveries.redrive, "redrive", "redriving"
        report = run(chosen, self.run_options(label))
        self.emit(report_view(report, verb))
        return self._exit_for(report)

    def dlq_purge(self) -> ExitCode:
        if not self.args.yes and not self.args.dry_run:
            print(
                "error: refusing to purge without --yes (nothing was deleted). Preview with --dry-run; "
                "delivery records stay in the table, so `recover` can bring purged deliveries back.",
                file=self.stderr,
            )
            return ExitCode.USAGE
        chosen = self._selection()
        target = self.services.conversions if self._on_evaluator_queue() else self.services.deliveries
        report = target.purge(chosen, self.run_options("purging"))
        self.emit(report_view(report, f"purge {target.queue_name}"))
        return ExitCode.OK

    def recover(self) -> ExitCode:
        report = self.services.recovery.run(self._selection(), self.run_options("recovering"))
        self.emit(report_view(report, "recover"))
        return self._exit_for(report)

    def _exit_for(self, report: RedriveReport) -> ExitCode:
        if not report.incomplete:
            return ExitCode.OK
        gone = report.not_replayable
        if gone:
            print(
                f"{gone} stream range(s) are no longer in the conversions stream (24 h retention) and were left in "
                "the DLQ: recover those conversions from the conversion service's records (docs/runbook.md), "
                "then purge the messages",
                file=self.stderr,
            )
        if any(outcome.result in (Result.FAILED, Result.SKIPPED) for outcome in report.outcomes):
            print("some selected items were skipped or failed (see above); a re-run picks them up", file=self.stderr)
        return ExitCode.PARTIAL

    def status(self) -> ExitCode:
        sources = self.services.status
        if sources is None:
            print("error: status is not wired in these services", file=self.stderr)
            return ExitCode.FAILURE
        report = read_status(
            sources,
            self.services.clock(),
            window=STATUS_WINDOW,
            sample=self.args.sample,
            scan_dlqs=not self.args.no_dlq_scan,
            progress=self.progress,
        )
        self.emit(status_view(report))
        return ExitCode.OK

    def hosts(self) -> ExitCode:
        paused_hosts = self.services.paused_hosts or bootstrap.host_repository().paused_hosts
        self.emit(hosts_view(paused_hosts(), self.services.clock().timestamp()))
        return ExitCode.OK

    def run(self) -> ExitCode:
        if self.args.command == "recover":
            return self.recover()
        if self.args.command == "hosts":
            return self.hosts()
        if self.args.command == "status":
            return self.status()
        handlers: dict[str, Callable[[], ExitCode]] = {
            "stats": self.dlq_stats,
            "list": self.dlq_list,
            "show": self.dlq_show,
            "redrive": self.dlq_redrive,
            "purge": self.dlq_purge,
        }
        return handlers[self.args.dlq_command]()


def main(
    argv: Sequence[str] | None = None,
    *,
    services: Services | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    parser = build_parser()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exit_:  # argparse: --help (0) or a usage error (2), message already printed
        return exit_.code if isinstance(exit_.code, int) else ExitCode.USAGE
    try:
        if services is not None:
            active = services
        else:
            use_local_credentials(load_settings())
            active = build_services(resolve_stack(args.stack) if args.stack else None)
        return Command(active, args, out, err).run()
    except (UsageError, TimeArgumentError) as error:
        print(f"error: {error}", file=err)
        return ExitCode.USAGE
    except SettingsError as error:
        print(f"error: configuration: {error}", file=err)
        return ExitCode.FAILURE
    except ClientError as error:
        details = error.response.get("Error", {})
        print(f"error: AWS {details.get('Code', 'error')}: {details.get('Message', error)}", file=err)
        return ExitCode.FAILURE
    except BotoCoreError as error:
        print(f"error: AWS: {error}", file=err)
        return ExitCode.FAILURE
    except ImportError as error:
        print(f"error: cannot load the evaluator to replay records: {error}", file=err)
        return ExitCode.FAILURE
    except KeyboardInterrupt:
        print("interrupted: nothing is lost; a re-run picks up where this one stopped", file=err)
        return ExitCode.INTERRUPTED
