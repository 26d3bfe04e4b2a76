"""Benchmark 5: end-to-end latency in the local stack — conversion written -> GET received.

`python -m local.stack` (what `make run` starts) runs as a subprocess on free ports with the
settings `make run` uses (private loopback targets allowed, every other setting at its default),
started and stopped with the end-to-end tests' helpers (`tests/e2e/harness.py`). With the admin
token it prints, one postback is created over HTTP for a fresh affiliate, pointing at a loopback
receiver (`local/receiver.py`) with `{conversionId}` and `{deliveryId}` in the URL. Conversions
(each a new `conversion_id`, status approved, an insert) are then written with boto3 to the moto
server on a fixed schedule (the n-th is due at n / rate), as the conversion service would: by
`WRITERS` threads, so that a slow PutItem delays no other write and the rate offered is the rate
asked for (one thread writing in a loop offers only what the server's answer time allows, which
is how an earlier version of this benchmark, asked for 100/s, wrote about 20/s). The rate achieved
(conversions / time from the first write to the last) and how late the writes started are
reported with the latencies. Latency of one conversion: from just before its PutItem to the moment
the receiver has answered its GET. The figures are p50/p95/p99 over every conversion, and the
count received (every conversion must arrive, once). The CPU time the stack's process and the
moto server's used from the first write until the last GET arrived, per conversion, shows what
each conversion costs the machine: the rate the local stack can keep up with on it is about its
cores divided by that sum (plus the writers' and the receiver's share).

The path measured: moto's stream (moto in its own process) -> the stream poller (one GetRecords
per batch, every 0.1 s when idle) -> the evaluator handler -> SQS -> the queue poller (4 workers,
long polls of 1 s) -> the sender handler -> the receiver: the pollers' pacing is part of the local
figure, and it is not Lambda's (whose pollers run continuously).

`--rate` and `--conversions` (`python -m bench.e2e_latency --rate 50`) measure other loads
outside `bench.run`, to find where the local stack stops keeping up.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.report import BenchmarkResult, Row
from bench.stats import percentile
from local.receiver import Receiver

RATE_PER_SECOND = 100
CPU_KEYS = {"stack process": "stack_cpu_ms_per_conversion", "moto server": "moto_cpu_ms_per_conversion"}
WRITERS = 8  # threads writing conversions on the schedule (a slow PutItem holds up none of the others)
TARGET_P50_SECONDS = 1.0
TARGET_P99_SECONDS = 2.0
READY_TIMEOUT_SECONDS = 60.0
DRAIN_TIMEOUT_SECONDS = 15.0
SETTLE_SECONDS = 1.0  # after the last GET: anything sent twice would arrive now
ROUTE = "/e2e"


@dataclass(frozen=True)
class LatencySummary:
    sent: int
    received: int  # distinct conversions whose GET arrived
    duplicates: int  # GETs beyond the first for a conversion
    unexpected: int  # GETs for conversions this run did not write
    latencies: tuple[float, ...]  # seconds, one per received conversion, in write order

    @property
    def missing(self) -> int:
        return self.sent - self.received

    def percentile(self, q: float) -> float | None:
        return percentile(self.latencies, q) if self.latencies else None


def summarise(written_at: Mapping[str, float], received: Iterable[tuple[str, float]]) -> LatencySummary:
    """Latencies from the write times by conversion ID and the (conversion ID, arrival time) of each GET.

    A conversion's latency is measured to its first GET; later GETs of it count as duplicates.
    """
    first: dict[str, float] = {}
    counts: Counter[str] = Counter()
    unexpected = 0
    for conversion_id, at in received:
        if conversion_id not in written_at:
            unexpected += 1
            continue
        counts[conversion_id] += 1
        first[conversion_id] = min(at, first.get(conversion_id, at))
    latencies = tuple(first[c] - written_at[c] for c in written_at if c in first)
    return LatencySummary(
        sent=len(written_at),
        received=len(first),
        duplicates=sum(count - 1 for count in counts.values()),
        unexpected=unexpected,
        latencies=latencies,
    )


def _duplicate_records(stack: Any, queries: Iterable[Mapping[str, str]]) -> list[dict[str, Any]]:
    """For each delivery whose GET arrived more than once: its state and attempts as recorded, so that a
    second GET can be told apart (a retry after an attempt that failed from the sender's side, such as an
    answer after the GET deadline, is the contract's retry; two recorded successes would be a defect)."""
    from functions.settings import Settings

    counts = Counter(query.get("d", "") for query in queries)
    records: list[dict[str, Any]] = []
    for delivery_id in sorted(d for d, count in counts.items() if count > 1 and d):
        item = stack.dynamodb.get_item(
            TableName=Settings().deliveries_table, Key={"delivery_id": {"S": delivery_id}}, ConsistentRead=True
        ).get("Item", {})
        records.append(
            {
                "delivery_id": delivery_id,
                "gets": counts[delivery_id],
                "state": item.get("st", {}).get("S"),  # the stored name of `state` (functions/storage/models.py)
                "item": json.dumps(item, sort_keys=True)[:4000],
            }
        )
    return records


def _stack_environment(moto_port: int, api_port: int) -> dict[str, str]:
    from tests.e2e.harness import stack_environment

    # The harness's environment is tuned for fast retry tests; the benchmark measures `make run`'s
    # defaults (docs/contract.md §8), so put those back.
    return stack_environment(
        moto_port,
        api_port,
        POSTBACKS_RETRY_BASE_SECONDS="30",
        POSTBACKS_RULES_CACHE_SECONDS="5",
        POSTBACKS_MAX_ATTEMPTS="13",
    )


@dataclass(frozen=True)
class Writes:
    written_at: dict[str, float]  # conversion ID -> wall-clock time just before its PutItem
    late: list[float]  # per conversion: seconds its PutItem started after it was due

    @property
    def achieved_rate(self) -> float:
        """Conversions per second from the first write to the last (the rate offered to the stack)."""
        times = sorted(self.written_at.values())
        span = times[-1] - times[0] if len(times) > 1 else 0.0
        return (len(times) - 1) / span if span > 0 else float(len(times))


def _write_scheduled(stack: Any, affiliate_id: str, run: str, count: int, rate: float) -> Writes:
    """Insert `count` approved conversions, the n-th due at n / `rate` s, from `WRITERS` threads."""
    written_at: dict[str, float] = {}
    late: list[float] = [0.0] * count
    numbers = iter(range(count))
    lock = threading.Lock()
    errors: list[BaseException] = []
    started = time.monotonic()

    def writer() -> None:
        while not errors:
            with lock:
                number = next(numbers, None)
            if number is None:
                return
            due = started + number / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            conversion_id = f"e2e-{run}-{number:05d}"
            late[number] = max(0.0, time.monotonic() - due)
            written_at[conversion_id] = time.time()
            try:
                stack.put_conversion(affiliate_id, "approved", conversion_id=conversion_id, aff_s1=f"click-{number}")
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=writer, name=f"writer-{n}") for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return Writes(written_at, late)


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (Linux /proc; None elsewhere or when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _child_pids(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def _stack_cpu(stack_pid: int) -> dict[str, float | None]:
    """CPU seconds so far of the stack's process and of its moto server (its child process)."""
    children = _child_pids(stack_pid)
    return {"stack": _cpu_seconds(stack_pid), "moto": _cpu_seconds(children[0]) if children else None}


def measure(conversions: int, rate: float) -> tuple[LatencySummary, dict[str, Any]]:
    from tests.e2e.harness import Stack, aws_client, free_port, start_stack

    moto_port, api_port = free_port(), free_port()
    details: dict[str, Any] = {"conversions": conversions, "rate_per_second": rate}
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as directory, Receiver() as receiver:
        log_path = Path(directory) / "stack.log"
        launched = time.monotonic()
        process = start_stack(_stack_environment(moto_port, api_port), log_path)
        try:
            process.wait_for_line("ready", READY_TIMEOUT_SECONDS)
            details["stack_ready_seconds"] = round(time.monotonic() - launched, 2)
            token_line = next(line for line in process.lines if line.startswith("Admin token"))
            moto_url = f"http://127.0.0.1:{moto_port}"
            stack = Stack(
                api_url=f"http://127.0.0.1:{api_port}",
                moto_url=moto_url,
                token=token_line.split(":", 1)[1].strip(),
                dynamodb=aws_client("dynamodb", moto_url),
                sqs=aws_client("sqs", moto_url),
            )
            run = uuid.uuid4().hex[:8]
            affiliate_id = f"bench-e2e-{run}"
            response = stack.api(
                "POST",
                "/postbacks",
                {
                    "affiliate_id": affiliate_id,
                    "scope": "global",
                    "conversion_types": ["sale"],
                    "conversion_statuses": ["approved"],
                    "url": receiver.url(ROUTE + "?c={conversionId}&d={deliveryId}&click={affS1}"),
                },
            )
            if response.status_code != 201:
                raise RuntimeError(f"creating the postback: {response.status_code} {response.text[:300]}")
            # Changes written in the postback's own second may not fire it (docs/architecture.md).
            time.sleep(1.1)
            cpu_before = _stack_cpu(process.process.pid)
            writes = _write_scheduled(stack, affiliate_id, run, conversions, rate)
            written_at = writes.written_at
            details["writing_seconds"] = round(time.time() - min(written_at.values()), 2)
            details["achieved_rate_per_second"] = round(writes.achieved_rate, 2)
            details["writes_late_p99_seconds"] = round(percentile(writes.late, 99), 3)
            details["writes_late_max_seconds"] = round(max(writes.late), 3)
            try:
                receiver.wait_for(conversions, route=ROUTE, timeout=DRAIN_TIMEOUT_SECONDS)
            except TimeoutError as exc:
                details["drain_timeout"] = str(exc)
            cpu_after = _stack_cpu(process.process.pid)
            for name, before in cpu_before.items():
                after = cpu_after[name]
                if before is not None and after is not None:
                    details[f"{name}_cpu_ms_per_conversion"] = round((after - before) * 1000 / conversions, 2)
            time.sleep(SETTLE_SECONDS)
            hits = receiver.requests(ROUTE)
            summary = summarise(written_at, ((hit.query.get("c", ""), hit.at) for hit in hits))
            details["distinct_delivery_ids"] = len({hit.query.get("d") for hit in hits})
            if summary.duplicates:  # what the deliveries table says about each, while the stack is up
                details["duplicate_deliveries"] = _duplicate_records(stack, [hit.query for hit in hits])
        finally:
            details["stack_exit_code"] = process.stop(signal.SIGINT)
    details["latencies_seconds"] = [round(value, 4) for value in summary.latencies]
    return summary, details


def run(quick: bool = True) -> BenchmarkResult:
    # The target load: 100 conversions/s for a minute (two with --full).
    conversions = RATE_PER_SECOND * (60 if quick else 120)
    summary, details = measure(conversions, rate=float(RATE_PER_SECOND))
    p50, p95, p99 = (summary.percentile(q) for q in (50.0, 95.0, 99.0))
    note = (
        f"{summary.sent} conversions due at {details['rate_per_second']:.0f}/s, written at "
        f"{details['achieved_rate_per_second']:.1f}/s; from just before PutItem to the receiver's answer; "
        f"max {max(summary.latencies, default=0):.2f} s"
    )
    cpu_note = ", ".join(f"{name} {details[key]:.1f} ms" for name, key in CPU_KEYS.items() if key in details)
    rows = [
        Row(
            "5 end-to-end",
            "written -> GET received, p50",
            p50,
            "s",
            f"<= {TARGET_P50_SECONDS:.0f} s",
            None if p50 is None else p50 <= TARGET_P50_SECONDS,
            note=note,
        ),
        Row(
            "5 end-to-end",
            "conversions written per second (the rate offered)",
            details["achieved_rate_per_second"],
            "/s",
            f">= {0.95 * RATE_PER_SECOND:.0f}/s",
            details["achieved_rate_per_second"] >= 0.95 * details["rate_per_second"],
            note=f"due at {details['rate_per_second']:.0f}/s by {WRITERS} writers; "
            f"writes started late by p99 {details['writes_late_p99_seconds']:.2f} s",
        ),
        Row("5 end-to-end", "written -> GET received, p95", p95, "s"),
        Row(
            "5 end-to-end",
            "written -> GET received, p99",
            p99,
            "s",
            f"<= {TARGET_P99_SECONDS:.0f} s",
            None if p99 is None else p99 <= TARGET_P99_SECONDS,
        ),
        Row(
            "5 end-to-end",
            "conversions received (once each) / sent",
            float(summary.received),
            "count",
            f"= {summary.sent}",
            summary.received == summary.sent and summary.duplicates == 0 and summary.unexpected == 0,
            note=f"missing {summary.missing}, duplicate GETs {summary.duplicates}, unexpected {summary.unexpected}",
        ),
    ]
    if cpu_note:
        total = sum(details.get(key, 0.0) for key in CPU_KEYS.values())
        rows.append(Row("5 end-to-end", "CPU per conversion, stack + moto server", total, "ms", note=cpu_note))
    details.update(
        {
            "sent": summary.sent,
            "received": summary.received,
            "duplicates": summary.duplicates,
            "unexpected": summary.unexpected,
            "p50_seconds": p50,
            "p95_seconds": p95,
            "p99_seconds": p99,
        }
    )
    return BenchmarkResult("e2e_latency", rows, details)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.e2e_latency", description=__doc__.splitlines()[0])
    parser.add_argument("--conversions", type=int, default=RATE_PER_SECOND * 60)
    parser.add_argument("--rate", type=float, default=float(RATE_PER_SECOND), help="conversions written per second")
    args = parser.parse_args(argv)
    summary, details = measure(args.conversions, args.rate)
    p50, p95, p99 = (summary.percentile(q) for q in (50.0, 95.0, 99.0))
    print(
        f"{summary.sent} conversions due at {args.rate:g}/s, written at {details['achieved_rate_per_second']:g}/s: "
        f"p50 {p50 or 0:.3f} s, p95 {p95 or 0:.3f} s, p99 {p99 or 0:.3f} s, "
        f"max {max(summary.latencies, default=0):.3f} s; received {summary.received}, "
        f"duplicates {summary.duplicates}, unexpected {summary.unexpected}; CPU per conversion: "
        + ", ".join(f"{name} {details.get(key, '?')} ms" for name, key in CPU_KEYS.items())
    )
    return 0 if summary.received == summary.sent and not summary.duplicates else 1


if __name__ == "__main__":
    from bench import environment

    environment.prepare()
    raise SystemExit(main())
