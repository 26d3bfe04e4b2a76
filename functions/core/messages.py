"""Message bodies on the queues, shared by the evaluator, the sender and the on-call tools.

Deliveries queue: `{"v": 1, "delivery_id": ...}` — the delivery record is the durable truth;
the message only says which record to work on. Message attributes `affiliate_id`,
`postback_id` help filtering without reading the body.

Deliveries DLQ: the delivery's identity, why it was dead-lettered and its attempt history, so
an on-call engineer can judge it from the message alone (and redrive it by `delivery_id`). A
deliveries-queue message the sender cannot work on is set aside there whole: one whose body names
no delivery (`malformed_message`), or one naming a delivery that has no record (`unknown_delivery`).

Evaluator DLQ: the stream record whole, the reason, and its stream position.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from functions.core.model import PlannedDelivery

MESSAGE_VERSION = 1
REASON_MALFORMED_MESSAGE = "malformed_message"
REASON_UNKNOWN_DELIVERY = "unknown_delivery"


def delivery_message(delivery_id: str) -> dict[str, Any]:
    return {"v": MESSAGE_VERSION, "delivery_id": delivery_id}


def delivery_id_of(body: Any) -> str:
    """The delivery ID of a deliveries-queue (or DLQ) message body; ValueError if it has none."""
    if not isinstance(body, dict) or not isinstance(body.get("delivery_id"), str) or not body["delivery_id"]:
        raise ValueError("message body has no delivery_id")
    return str(body["delivery_id"])


def dead_letter_message(
    *,
    delivery_id: str,
    affiliate_id: str,
    postback_id: str,
    conversion_id: str,
    conversion_status: str,
    target_host: str,
    reason: str,
    last_status_code: int | None,
    attempts: list[dict[str, Any]],
    created_at: str,
    dead_lettered_at: str,
) -> dict[str, Any]:
    return {
        "v": MESSAGE_VERSION,
        "kind": "delivery",
        "delivery_id": delivery_id,
        "affiliate_id": affiliate_id,
        "postback_id": postback_id,
        "conversion_id": conversion_id,
        "conversion_status": conversion_status,
        "target_host": target_host,
        "reason": reason,
        "last_status_code": last_status_code,
        "attempts": attempts,
        "created_at": created_at,
        "dead_lettered_at": dead_lettered_at,
    }


def unsent_delivery_dead_letter(delivery: PlannedDelivery, reason: str, at: str) -> dict[str, Any]:
    """The DLQ copy of a delivery recorded dead-lettered at match time, never attempted (`url_too_long`)."""
    return dead_letter_message(
        delivery_id=delivery.delivery_id,
        affiliate_id=delivery.affiliate_id,
        postback_id=delivery.postback_id,
        conversion_id=delivery.conversion_id,
        conversion_status=delivery.conversion_status,
        target_host=delivery.target_host,
        reason=reason,
        last_status_code=None,
        attempts=[],
        created_at=at,
        dead_lettered_at=at,
    )


def dead_letter_attributes(
    affiliate_id: str, postback_id: str, reason: str, last_status_code: int | None
) -> dict[str, str]:
    return {
        "affiliate_id": affiliate_id,
        "postback_id": postback_id,
        "reason": reason,
        "status_code": "" if last_status_code is None else str(last_status_code),
    }


def malformed_message_dead_letter(message_id: str, body: str, at: str) -> dict[str, Any]:
    """The DLQ copy of a deliveries-queue message whose body names no delivery: kept whole."""
    return {
        "v": MESSAGE_VERSION,
        "kind": REASON_MALFORMED_MESSAGE,
        "reason": REASON_MALFORMED_MESSAGE,
        "message_id": message_id,
        "body": body,
        "dead_lettered_at": at,
    }


def unknown_delivery_dead_letter(message_id: str, body: str, delivery_id: str, at: str) -> dict[str, Any]:
    """The DLQ copy of a deliveries-queue message naming a delivery that has no record: kept whole."""
    return malformed_message_dead_letter(message_id, body, at) | {
        "kind": REASON_UNKNOWN_DELIVERY,
        "reason": REASON_UNKNOWN_DELIVERY,
        "delivery_id": delivery_id,
    }


def set_aside_attributes(reason: str) -> dict[str, str]:
    """The message attributes of a set-aside message (`malformed_message`, `unknown_delivery`)."""
    return {"reason": reason, "status_code": ""}


def evaluator_dead_letter_message(
    *, record: dict[str, Any], reason: str, event_source_arn: str | None, sequence_number: str | None, at: str
) -> dict[str, Any]:
    return {
        "v": MESSAGE_VERSION,
        "kind": "conversion_record",
        "reason": reason,
        "event_source_arn": event_source_arn,
        "sequence_number": sequence_number,
        "dead_lettered_at": at,
        "record": record,
    }
