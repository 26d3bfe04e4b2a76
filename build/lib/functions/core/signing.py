"""Signed postbacks (docs/contract.md §6): signing secrets, the `{timestamp}` and `{signature}` placeholders.

A postback's URL may end with `{signature}` as the value of its final query parameter. At each
attempt the sender fills `{timestamp}` (Unix seconds when the attempt is sent) and signs: the
signature is base64url without padding of HMAC-SHA256, keyed with the UTF-8 bytes of the
postback's signing secret, over the UTF-8 request target as sent (path, `?`, query) up to where
the signature value starts. For `/cb?click=abc&ts=1795998367&sig=<value>` the signed message is
`/cb?click=abc&ts=1795998367&sig=`.

"As sent" is exact: `wire_target` percent-encodes the path and query exactly as the HTTP client
(urllib3) does before it writes the request line, so the message signed here is the text a
receiver reads from its request line, and the URL handed to the client is already in that form
(the client leaves it unchanged). A delivery record keeps the URL with `{timestamp}` and
`{signature}` unfilled, so each retry is signed afresh and no signature is ever stored.

Pure: the standard library only, no settings, no clock (the caller passes the time).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import string
from collections.abc import Callable
from urllib.parse import urlsplit

SECRET_PREFIX = "pbsec_"
SECRET_RANDOM_BYTES = 32
TIMESTAMP = "timestamp"
SIGNATURE = "signature"
TIMESTAMP_PLACEHOLDER = "{" + TIMESTAMP + "}"
SIGNATURE_PLACEHOLDER = "{" + SIGNATURE + "}"
# Filled by the sender at each attempt, never at match time.
ATTEMPT_PLACEHOLDERS = frozenset({TIMESTAMP, SIGNATURE})
# The skew we recommend receivers accept between `{timestamp}` and their clock (docs/receiving.md).
RECOMMENDED_MAX_SKEW_SECONDS = 300

SECRET_PATTERN = re.compile(r"^pbsec_[A-Za-z0-9_-]{43,}$")

# What urllib3 leaves literal in a request target (RFC 3986): everything else is percent-encoded.
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
_PATH_CHARS = _UNRESERVED | frozenset("!$&'()*+,;=") | frozenset(":@/")
_QUERY_CHARS = _PATH_CHARS | frozenset("?")
_PERCENT = re.compile(r"%[a-fA-F0-9]{2}")


class SigningSecret:
    """A signing secret that never shows itself: `repr` and `str` hide the value; `reveal()` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "SigningSecret(***)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SigningSecret) and hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self._value)


class SigningSecretMissing(Exception):
    """A URL with `{signature}` and no secret to sign it with; the GET is not sent unsigned."""


def new_signing_secret(random_bytes: Callable[[int], bytes] = os.urandom) -> str:
    """`pbsec_` and 32 random bytes, base64url without padding (43 characters)."""
    return SECRET_PREFIX + _b64url(random_bytes(SECRET_RANDOM_BYTES))


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def signature(secret: str, message: str) -> str:
    """base64url (no padding) HMAC-SHA256 of the UTF-8 `message`, keyed with the UTF-8 `secret`."""
    return _b64url(hmac.new(secret.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).digest())


def _encode_component(component: str, allowed: frozenset[str]) -> str:
    """urllib3's percent-encoding of one component of a request target (`_encode_invalid_chars`).

    Valid `%XX` escapes are upper-cased and kept when every `%` of the component starts one;
    otherwise every `%` is encoded too. Every byte outside `allowed` is encoded as `%XX`.
    """
    if "%" not in component and component.isascii() and all(char in allowed for char in component):
        return component
    component, escapes = _PERCENT.subn(lambda match: match.group(0).upper(), component)
    raw = component.encode("utf-8", "surrogatepass")
    keep_percent = escapes == raw.count(b"%")
    out: list[str] = []
    for byte in raw:
        if (keep_percent and byte == 0x25) or (byte < 128 and chr(byte) in allowed):
            out.append(chr(byte))
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def wire_target(url: str) -> str:
    """The request target the HTTP client writes for `url`: path (or `/`) and `?query`, percent-encoded."""
    parts = urlsplit(url)
    target = _encode_component(parts.path or "/", _PATH_CHARS)
    if parts.query:
        target += "?" + _encode_component(parts.query, _QUERY_CHARS)
    return target


def uses_signature(template: str) -> bool:
    return SIGNATURE_PLACEHOLDER in template


def signature_problems(template: str) -> list[str]:
    """Why `{signature}` is not where it must be: the value of the URL's final query parameter."""
    count = template.count(SIGNATURE_PLACEHOLDER)
    if count == 0:
        return []
    if count > 1:
        return ["{signature} may appear only once"]
    head = template[: -len(SIGNATURE_PLACEHOLDER)]
    if not template.endswith(SIGNATURE_PLACEHOLDER) or "#" in template:
        return ["{signature} must be the last thing in the URL: the value of its final query parameter"]
    query_start = head.find("?", head.find("://") + 3 if "://" in head else 0)
    last_parameter = head[max(head.rfind("&"), query_start) + 1 :]
    if query_start == -1 or not last_parameter.endswith("=") or len(last_parameter) < 2:
        return ["{signature} must be the value of the URL's final query parameter, e.g. &sig={signature}"]
    if "{" in last_parameter or "}" in last_parameter:
        return ["the name of the {signature} parameter must be plain text"]
    return []


def attempt_url(url: str, secret: SigningSecret | None, unix_seconds: int) -> str:
    """`url` (as stored: `{timestamp}` and `{signature}` unfilled) as one attempt sends it.

    `{timestamp}` becomes `unix_seconds`; a URL ending with `{signature}` is put in its wire form
    (`wire_target`) and signed with `secret` (`SigningSecretMissing` without one). A URL without
    either placeholder is returned unchanged.
    """
    if TIMESTAMP_PLACEHOLDER in url:
        url = url.replace(TIMESTAMP_PLACEHOLDER, str(unix_seconds))
    if not url.endswith(SIGNATURE_PLACEHOLDER):
        return url
    if secret is None:
        raise SigningSecretMissing("the URL is signed but the postback has no signing secret")
    head = url[: -len(SIGNATURE_PLACEHOLDER)]
    parts = urlsplit(head)
    target = wire_target(head)
    return f"{parts.scheme}://{parts.netloc}{target}{signature(secret.reveal(), target)}"
