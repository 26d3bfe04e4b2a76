"""pynamodb models of the postbacks and deliveries tables.

The tables themselves are defined once, in `infrastructure/template.json`; a test checks that
the key schemas and indexes there agree with these models. Table names come from
`functions.settings` (read at import, as pynamodb requires).

postbacks
    hash key `postback_id`: the API reads one postback by id with a consistent GetItem.
    GSI `by_affiliate` (affiliate_id, created_at), projection ALL: the evaluator reads all
    postbacks of one affiliate with one Query; the API lists an affiliate's postbacks newest first.
    GSI `by_created` (listing, created_at): an admin's list of every postback, newest first.
    Quota items (`postback_id` = `quota#<affiliate>`, attribute `postback_count`) hold the number
    of postbacks per affiliate; create and delete update them in the same transaction, so the
    per-affiliate limit holds under concurrency. They carry no index attributes.
    The rules version item (`postback_id` = `rules#version`, attributes `rules_version` and
    `rules_changed_at`) is bumped in the same transaction as every create, update and delete of a
    postback; the evaluator reads it once per batch to know whether its cached postbacks are still
    current (docs/evaluator.md). It carries no index attributes either, so it is in no GSI.
    Signing secret items (`postback_id` = `secret#<postback id>`, attributes `signing_secret` and
    `signing_secret_rotated_at`) hold each postback's signing secret (docs/security.md). No index
    attribute either: no Query of an index, no listing and no evaluator read ever returns one; the
    sender reads it in the same BatchGetItem as the postbacks, the API only for its own endpoint.
    Host state items (`postback_id` = `host#<name>:<port>`) hold a tracker host's consecutive
    failures and pause (`functions.storage.hosts`, docs/sender.md); no index attributes either.

postback-deliveries
    hash key `delivery_id` (derived from postback, conversion and status: the dedup key).
    GSI `by_postback` (postback_id, created_at): the delivery log, newest first.
    GSI `by_dead_letter` (dead_letter_partition, dead_lettered_at), sparse: dead-lettered
    deliveries by time, for `recover --since` after the DLQ copy has expired.
    TTL attribute `expires_at` (epoch seconds).
    Stored names are short (`attr_name`): a delivery is written three times on its happy path
    (create, lease, outcome) and DynamoDB bills each write per started KiB of the whole item,
    names included; with the full names a delivery with a tracker URL of typical length crossed
    1 KiB at its outcome (docs/performance.md, write units). Key, index and TTL attributes keep
    their names (the template defines them); the attempt log's entries are short-named too.
"""

from __future__ import annotations

from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
    VersionAttribute,
)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from functions import settings

POSTBACK_LISTING_PARTITION = "postbacks"
QUOTA_PREFIX = "quota#"
RULES_VERSION_KEY = "rules#version"
SIGNING_SECRET_PREFIX = "secret#"
# Every DynamoDB call is bounded; the pool lets the sender's concurrent workers share one client.
CONNECT_TIMEOUT_SECONDS = 3
READ_TIMEOUT_SECONDS = 10
MAX_POOL_CONNECTIONS = 50


class PostbacksByAffiliate(GlobalSecondaryIndex["PostbackModel"]):
    class Meta:
        index_name = "by_affiliate"
        projection = AllProjection()

    affiliate_id = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class PostbacksByCreated(GlobalSecondaryIndex["PostbackModel"]):
    class Meta:
        index_name = "by_created"
        projection = AllProjection()

    listing = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class PostbackModel(Model):
    class Meta:
        table_name = settings.POSTBACKS_TABLE
        region = settings.REGION
        connect_timeout_seconds = CONNECT_TIMEOUT_SECONDS
        read_timeout_seconds = READ_TIMEOUT_SECONDS
        max_pool_connections = MAX_POOL_CONNECTIONS

    postback_id = UnicodeAttribute(hash_key=True)
    affiliate_id = UnicodeAttribute(null=True)
    listing = UnicodeAttribute(null=True)
    scope = UnicodeAttribute(null=True)
    included_offer_ids = ListAttribute(of=UnicodeAttribute, null=True)  # type: ignore[var-annotated]
    excluded_offer_ids = ListAttribute(of=UnicodeAttribute, null=True)  # type: ignore[var-annotated]
    conversion_types = ListAttribute(of=UnicodeAttribute, null=True)  # type: ignore[var-annotated]
    conversion_statuses = ListAttribute(of=UnicodeAttribute, null=True)  # type: ignore[var-annotated]
    url = UnicodeAttribute(null=True)
    enabled = BooleanAttribute(null=True)
    created_at = UnicodeAttribute(null=True)
    updated_at = UnicodeAttribute(null=True)
    created_by = UnicodeAttribute(null=True)
    updated_by = UnicodeAttribute(null=True)
    version = VersionAttribute()
    # Health, maintained by the sender.
    last_success_at = UnicodeAttribute(null=True)
    consecutive_failures = NumberAttribute(null=True)
    last_failure_reason = UnicodeAttribute(null=True)
    last_failure_at = UnicodeAttribute(null=True)
    delay_seconds = NumberAttribute(null=True)
    # Quota items only.
    postback_count = NumberAttribute(null=True)
    # Signing secret items only.
    signing_secret = UnicodeAttribute(null=True)
    signing_secret_rotated_at = UnicodeAttribute(null=True)
    # The rules version item only: a counter and when it last changed (epoch seconds).
    rules_version = NumberAttribute(null=True)
    rules_changed_at = NumberAttribute(null=True)
    # Host state items only (`host#<name>:<port>`, functions.storage.hosts): the host pause.
    host_paused_until = NumberAttribute(null=True)
    host_pauses = NumberAttribute(null=True)
    host_probe_until = NumberAttribute(null=True)
    # Test-fire counter items only (`testfires#<postback id>`, functions.storage.test_fire_limits).
    fire_window = NumberAttribute(null=True)
    fire_count = NumberAttribute(null=True)

    by_affiliate = PostbacksByAffiliate()
    by_created = PostbacksByCreated()


class AttemptMap(MapAttribute[str, Any]):
    """One attempt of a delivery, as logged on the delivery record (docs/sender.md)."""

    number = NumberAttribute(attr_name="n")
    at = UnicodeAttribute(attr_name="at")
    duration_ms = NumberAttribute(null=True, attr_name="ms")
    outcome = UnicodeAttribute(attr_name="o")  # delivered | retryable | terminal | blocked | cancelled
    status_code = NumberAttribute(null=True, attr_name="sc")
    error = UnicodeAttribute(null=True, attr_name="e")
    resolved_address = UnicodeAttribute(null=True, attr_name="ip")
    retry_after = UnicodeAttribute(null=True, attr_name="ra")
    location = UnicodeAttribute(null=True, attr_name="loc")
    response_excerpt = UnicodeAttribute(null=True, attr_name="x")
    next_attempt_at = UnicodeAttribute(null=True, attr_name="na")
    test = BooleanAttribute(null=True, attr_name="t")


class DeliveriesByPostback(GlobalSecondaryIndex["DeliveryModel"]):
    class Meta:
        index_name = "by_postback"
        projection = AllProjection()

    postback_id = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class DeliveriesByDeadLetter(GlobalSecondaryIndex["DeliveryModel"]):
    class Meta:
        index_name = "by_dead_letter"
        projection = AllProjection()

    dead_letter_partition = UnicodeAttribute(hash_key=True)
    dead_lettered_at = UnicodeAttribute(range_key=True)


class DeliveryModel(Model):
    class Meta:
        table_name = settings.DELIVERIES_TABLE
        region = settings.REGION
        connect_timeout_seconds = CONNECT_TIMEOUT_SECONDS
        read_timeout_seconds = READ_TIMEOUT_SECONDS
        max_pool_connections = MAX_POOL_CONNECTIONS

    delivery_id = UnicodeAttribute(hash_key=True)
    postback_id = UnicodeAttribute()
    affiliate_id = UnicodeAttribute(attr_name="aff")
    conversion_id = UnicodeAttribute(attr_name="cv")
    conversion_status = UnicodeAttribute(attr_name="cs")  # the status that fired it
    previous_status = UnicodeAttribute(null=True, attr_name="ps")
    offer_id = UnicodeAttribute(null=True, attr_name="of")
    url = UnicodeAttribute(attr_name="u")  # rendered at match time; never logged (it carries click data)
    target_host = UnicodeAttribute(attr_name="th")
    state = UnicodeAttribute(attr_name="st")  # functions.core.model.DeliveryState
    reason = UnicodeAttribute(null=True, attr_name="rs")
    is_test = BooleanAttribute(default=False, attr_name="t")
    attempts = ListAttribute(of=AttemptMap, default=list, attr_name="log")  # type: ignore[var-annotated]
    # Attempts of the current schedule (a redrive starts a new schedule; history is kept).
    cycle_attempts = NumberAttribute(default=0, attr_name="ca")
    schedule_started_at = UnicodeAttribute(null=True, attr_name="ss")
    next_attempt_at = UnicodeAttribute(null=True, attr_name="na")
    lease_owner = UnicodeAttribute(null=True, attr_name="lo")
    lease_expires_at = NumberAttribute(null=True, attr_name="lx")  # epoch seconds
    enqueued_at = UnicodeAttribute(null=True, attr_name="eq")
    delivered_at = UnicodeAttribute(null=True, attr_name="da")
    dead_lettered_at = UnicodeAttribute(null=True)
    dead_letter_partition = UnicodeAttribute(null=True)
    redrive_count = NumberAttribute(default=0, attr_name="rc")
    # The DLQ message id (or recover run) that last reset this delivery for a redrive: makes redrive idempotent.
    redrive_token = UnicodeAttribute(null=True, attr_name="rt")
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute(attr_name="ua")
    expires_at = NumberAttribute()  # TTL, epoch seconds
    # Dead-lettered only: the DLQ copy was sent. Absent = not (yet): the message must not be acknowledged.
    dlq_copy_sent = BooleanAttribute(null=True)
    # The last host pause the delivery waited for (no GET, no attempt spent) and how many times it waited.
    host_paused_until = UnicodeAttribute(null=True)
    host_pause_waits = NumberAttribute(null=True)

    by_postback = DeliveriesByPostback()
    by_dead_letter = DeliveriesByDeadLetter()


def bind_table_names(postbacks_table: str, deliveries_table: str) -> None:
    """Point the models at other tables than the environment named at import (the on-call tools'
    `--stack`, whose names come from the stack's outputs). pynamodb reconnects on the next call."""
    PostbackModel.Meta.table_name = postbacks_table
    DeliveryModel.Meta.table_name = deliveries_table
