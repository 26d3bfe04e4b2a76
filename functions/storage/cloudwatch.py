"""What the on-call `status` reads from CloudWatch: the queues' oldest message ages and the alarms firing.

SQS has no queue attribute for the age of the oldest message; CloudWatch has it
(`AWS/SQS ApproximateAgeOfOldestMessage`, one value a minute). One GetMetricData call reads it for
every queue; one DescribeAlarms call (by the stage's name prefix) the alarms in state ALARM.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

# The latest value within this window counts (SQS publishes every minute; a quiet queue less often).
AGE_WINDOW = timedelta(minutes=15)


@dataclass(frozen=True)
class FiringAlarm:
    """A CloudWatch alarm in the ALARM state, why, and since when."""

    name: str
    reason: str
    since: str | None


def oldest_message_ages(cloudwatch: Any, queue_names: Sequence[str], now: datetime) -> dict[str, float | None]:
    """Queue name -> the latest `ApproximateAgeOfOldestMessage` (seconds) of the last 15 minutes, or None."""
    if not queue_names:
        return {}
    queries = [
        {
            "Id": f"q{index}",
            "MetricStat": {
                "Metric": {
                    "Namespace": "AWS/SQS",
                    "MetricName": "ApproximateAgeOfOldestMessage",
                    "Dimensions": [{"Name": "QueueName", "Value": name}],
                },
                "Period": 60,
                "Stat": "Maximum",
            },
            "ReturnData": True,
        }
        for index, name in enumerate(queue_names)
    ]
    response = cloudwatch.get_metric_data(
        MetricDataQueries=queries, StartTime=now - AGE_WINDOW, EndTime=now, ScanBy="TimestampDescending"
    )
    ages: dict[str, float | None] = dict.fromkeys(queue_names)
    for result in response.get("MetricDataResults", []):
        index = int(str(result["Id"])[1:])
        pairs = sorted(zip(result.get("Timestamps", []), result.get("Values", []), strict=False), reverse=True)
        if pairs:
            ages[queue_names[index]] = float(pairs[0][1])
    return ages


def firing_alarms(cloudwatch: Any, name_prefix: str) -> list[FiringAlarm]:
    """The alarms whose name starts with `name_prefix` that are in state ALARM."""
    alarms: list[FiringAlarm] = []
    paginator = cloudwatch.get_paginator("describe_alarms")
    for page in paginator.paginate(AlarmNamePrefix=name_prefix, StateValue="ALARM"):
        for alarm in [*page.get("MetricAlarms", []), *page.get("CompositeAlarms", [])]:
            since = alarm.get("StateUpdatedTimestamp")
            alarms.append(
                FiringAlarm(
                    name=str(alarm["AlarmName"]),
                    reason=str(alarm.get("StateReason", "")),
                    since=since.isoformat() if isinstance(since, datetime) else None,
                )
            )
    return sorted(alarms, key=lambda alarm: alarm.name)
