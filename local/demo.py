"""`make demo`: with `make run` going in another terminal, watch a postback fire end to end.

1. Start a tracker stand-in on a free loopback port.
2. Create a postback for a new affiliate through the API (admin token), with placeholders.
3. Write a conversion (status `pending`) to the conversions table, as the conversion service does
   (`local.conversions`, the same as `python -m local.conversions put …`).
4. Show the GET the tracker receives, placeholders filled.
5. Approve the conversion (`python -m local.conversions approve ID`); show the second GET.
6. Print the postback's delivery log from the API.
"""

from __future__ import annotations

import json
import os
import sys
import time
from decimal import Decimal
from typing import Any

import requests

from functions.settings import load_settings
from local.config import LocalConfig, LocalConfigError
from local.conversions import ConversionToolError, dynamodb_client, new_record, put_conversion, set_status
from local.receiver import Receiver
from local.tokens import admin_token

HTTP_TIMEOUT = (3.0, 10.0)
GET_TIMEOUT_SECONDS = 15.0


class DemoError(RuntimeError):
    """A step of the demo did not do what it should."""


def _say(text: str = "") -> None:
    print(text, flush=True)


def _api(method: str, url: str, token: str, body: dict[str, Any] | None = None) -> Any:
    response = requests.request(
        method, url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=HTTP_TIMEOUT
    )
    if response.status_code >= 400:
        raise DemoError(f"{method} {url} -> {response.status_code}: {response.text}")
    return response.json() if response.content else None


def _wait_for_get(receiver: Receiver, count: int) -> None:
    started = time.monotonic()
    try:
        hits = receiver.wait_for(count, timeout=GET_TIMEOUT_SECONDS)
    except TimeoutError as exc:
        raise DemoError(f"no GET reached the tracker: {exc} (is `make run` running with the same ports?)") from exc
    hit = hits[count - 1]
    _say(f"   <- the tracker received, {time.monotonic() - started:.2f} s later:")
    _say(f"      GET {hit.path}")
    _say(f"      User-Agent: {hit.headers.get('User-Agent', '')}")
    for name, value in hit.query.items():
        _say(f"        {name:>10} = {value}")


def run(config: LocalConfig) -> None:
    settings = load_settings()
    affiliate = f"aff-demo-{int(time.time())}"  # a new affiliate per run: earlier runs' postbacks stay quiet
    token = admin_token(settings)
    api = config.api_url
    try:
        requests.get(f"{api}/health", timeout=HTTP_TIMEOUT).raise_for_status()
    except requests.RequestException as exc:
        raise DemoError(f"the API at {api} does not answer; start the stack with `make run` first ({exc})") from exc
    conversions = dynamodb_client({**os.environ, "AWS_ENDPOINT_URL": config.moto_url})

    with Receiver() as receiver:
        _say(f"1. A tracker stand-in listens on {receiver.base_url}")
        url = receiver.url(
            "/postback?click={affS1}&status={conversionStatus}&was={previousStatus}"
            "&payout={payout}&currency={currency}&delivery={deliveryId}"
        )
        postback = _api(
            "POST",
            f"{api}/postbacks",
            token,
            {
                "affiliate_id": affiliate,
                "scope": "global",
                "conversion_types": ["sale"],
                "conversion_statuses": ["pending", "approved"],
                "url": url,
            },
        )
        _say(f"2. Created postback {postback['id']} for {affiliate}: every offer, type sale,")
        _say("   statuses pending and approved, URL:")
        _say(f"   {postback['url']}")

        record = new_record(
            affiliate_id=affiliate,
            offer_id="offer-7",
            conversion_type="sale",
            status="pending",
            extra={"aff_s1": "click-abc 123", "payout": Decimal("12.5"), "currency": "EUR"},
        )
        conversion_id = put_conversion(conversions, settings.conversions_table, record)
        _say(f"3. The conversion service wrote {conversion_id} (offer-7, sale, payout 12.5 EUR, status pending),")
        _say(f"   as `python -m local.conversions put --affiliate {affiliate} --offer offer-7 --type sale")
        _say("   --status pending --aff-s1 'click-abc 123' --payout 12.5 --currency EUR` would")
        _wait_for_get(receiver, 1)

        set_status(conversions, settings.conversions_table, conversion_id, "approved")
        _say(f"4. The conversion service approved it: `python -m local.conversions approve {conversion_id}`")
        _wait_for_get(receiver, 2)

        log = _api("GET", f"{api}/postbacks/{postback['id']}/deliveries", token)
        _say(f"5. The delivery log of {postback['id']} (GET /postbacks/{{id}}/deliveries), newest first:")
        for delivery in log["items"]:
            attempts = ", ".join(
                f"#{n} {a.get('status_code')} in {a.get('duration_ms')} ms"
                for n, a in enumerate(delivery.get("attempts", []), 1)
            )
            _say(f"   {delivery['id']}  {delivery['status']:<9} {delivery['state']:<10} attempts: {attempts}")
        _say()
        _say("The full log entry of the first delivery:")
        _say(json.dumps(log["items"][-1], indent=2))


def main() -> int:
    try:
        run(LocalConfig.from_environ())
    except (DemoError, LocalConfigError, ConversionToolError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
