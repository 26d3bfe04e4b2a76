"""The egress guard's rules (SSRF): which URLs may be saved, which addresses may be reached.

Pure functions over an `EgressPolicy`; no network access. Two checks use them:

* write time, `url_problems(url, policy)`: the postback URL template is parsed strictly, and
  anything that is not an absolute http(s) URL to a public DNS name or a canonical public IP
  literal on an allowed port is refused with a human-readable reason;
* send time, `address_allowed(address, policy)` and `port_allowed(port, address, policy)`: every
  address the target name resolves to must be globally routable (or inside an explicitly
  allowed private range) before the sender connects to it.

Explicitly allowed private ranges (`POSTBACKS_ALLOW_PRIVATE_TARGETS`) exist for local receivers:
an IP literal inside one of them is accepted on any port, and `localhost` (or `*.localhost`) is
accepted only when the policy lets loopback through.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from functions.core.metadata import is_metadata_address

IPAddress = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

ALLOWED_SCHEMES = frozenset({"http", "https"})
DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_HOST_LENGTH = 253

# Names that never denote a public host (RFC 6761, RFC 6762, RFC 8375, ICANN's `.internal`).
_RESERVED_SUFFIXES = ("localhost", "local", "internal", "home.arpa", "localdomain")
_LOOPBACK_NAMES = ("localhost",)

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_IPV4 = re.compile(rf"^(?:{_OCTET}\.){{3}}{_OCTET}$")
# WHATWG URL: a host whose last label is numeric (decimal or 0x-hex) is parsed as IPv4 by
# browsers and many libraries (`127.1`, `2130706433`, `0x7f.0.0.1`, `017700000001`).
_NUMERIC_LABEL = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")
_FORBIDDEN_URL_CHARS = re.compile(r"[\x00-\x20\x7f\\]")
_PORT = re.compile(r"^[0-9]{1,5}$")

_METADATA_ADDRESSES = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),
        ipaddress.ip_address("fd00:ec2::254"),
        ipaddress.ip_address("169.254.170.2"),
    }
)
# Ranges Python's `is_global` lets through (or did in older patch releases) that must not be.
_EXTRA_BLOCKED_V4: tuple[IPv4Network, ...] = (
    IPv4Network("0.0.0.0/8"),
    IPv4Network("100.64.0.0/10"),  # CGNAT
    IPv4Network("192.0.0.0/24"),  # IETF protocol assignments
    IPv4Network("192.88.99.0/24"),  # 6to4 relay anycast
    IPv4Network("198.18.0.0/15"),  # benchmarking
    IPv4Network("224.0.0.0/4"),  # multicast
    IPv4Network("240.0.0.0/4"),  # reserved, broadcast
)
_NAT64 = IPv6Network("64:ff9b::/96")
_EXTRA_BLOCKED_V6: tuple[IPv6Network, ...] = (
    IPv6Network("::/96"),  # IPv4-compatible (deprecated)
    IPv6Network("64:ff9b:1::/48"),  # local-use NAT64
    IPv6Network("100::/64"),  # discard-only
    IPv6Network("2001::/32"),  # Teredo: tunnels to an IPv4 address chosen by the packet
    IPv6Network("2001:10::/28"),  # ORCHID
    IPv6Network("2001:20::/28"),  # ORCHIDv2
    IPv6Network("2001:db8::/32"),  # documentation
    IPv6Network("3fff::/20"),  # documentation
    IPv6Network("5f00::/16"),  # segment routing
    IPv6Network("fc00::/7"),  # unique local
    IPv6Network("fec0::/10"),  # site local (deprecated)
    IPv6Network("ff00::/8"),  # multicast
)


class InvalidUrl(ValueError):
    """A URL that cannot be a postback target; `reason` is human-readable.

    `forbidden` is True when the URL is well-formed enough to be sent somewhere but is refused by
    the egress rules (another scheme, userinfo, a non-canonical IP form, a zone ID): at send time
    that is a blocked destination rather than a malformed URL.
    """

    def __init__(self, reason: str, *, forbidden: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.forbidden = forbidden


@dataclass(frozen=True)
class EgressPolicy:
    """Ports a public target may use, and private ranges let through (built from the settings by
    `functions.bootstrap.egress_policy`)."""

    allowed_ports: frozenset[int]
    allow_private: tuple[Network, ...] = ()

    @property
    def allows_loopback(self) -> bool:
        """True when both loopback addresses `localhost` may resolve to are explicitly allowed."""
        return self.in_allowed_private(IPv4Address("127.0.0.1")) and self.in_allowed_private(IPv6Address("::1"))

    def in_allowed_private(self, address: IPAddress) -> bool:
        """True when an explicitly allowed range holds `address`; never for a metadata address."""
        if is_metadata_address(address):
            return False
        candidates: list[IPAddress] = [address]
        if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)
        return any(candidate in network for candidate in candidates for network in self.allow_private)


@dataclass(frozen=True)
class Target:
    """The scheme, host and port of a URL, normalised.

    `host` is lower-case ASCII (IDNA-encoded, no trailing dot, no brackets); `address` is set when
    the host is an IP literal; `port` is the effective port (explicit or the scheme's default).
    """

    scheme: str
    host: str
    port: int
    explicit_port: bool
    address: IPAddress | None

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if isinstance(self.address, IPv6Address) else self.host
        return f"{host}:{self.port}" if self.explicit_port else host


def blocked_reason(address: IPAddress) -> str | None:
    """Why `address` is not globally routable, or None when it is public."""
    if address in _METADATA_ADDRESSES:
        return "a cloud metadata address"
    if isinstance(address, IPv6Address):
        return _blocked_reason_v6(address)
    return _blocked_reason_v4(address)


def _blocked_reason_v4(address: IPv4Address) -> str | None:
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address in IPv4Network("100.64.0.0/10"):
        return "a carrier-grade NAT address"
    if address.is_private:
        return "a private or reserved address"
    if address.is_reserved or any(address in network for network in _EXTRA_BLOCKED_V4):
        return "a reserved address"
    if not address.is_global:
        return "not a globally routable address"
    return None


def _blocked_reason_v6(address: IPv6Address) -> str | None:
    if address.scope_id:
        return "an IPv6 address with a zone ID"
    mapped = address.ipv4_mapped
    if mapped is not None:
        inner = blocked_reason(mapped)
        return None if inner is None else f"an IPv4-mapped form of {inner}"
    if address in _NAT64:
        inner = blocked_reason(IPv4Address(int(address) & 0xFFFFFFFF))
        return None if inner is None else f"a NAT64 form of {inner}"
    sixtofour = address.sixtofour
    if sixtofour is not None:
        inner = blocked_reason(sixtofour)
        if inner is not None:
            return f"a 6to4 form of {inner}"
    if address.teredo is not None:
        return "a Teredo address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_private or address.is_site_local or any(address in net for net in _EXTRA_BLOCKED_V6):
        return "a private or reserved address"
    if address.is_reserved or not address.is_global:
        return "not a globally routable address"
    return None


def is_public_address(address: IPAddress) -> bool:
    """True if `address` is globally routable and no embedding of a non-public IPv4 address."""
    return blocked_reason(address) is None


def address_allowed(address: IPAddress, policy: EgressPolicy) -> bool:
    """Send time: may the sender connect to `address`?"""
    return policy.in_allowed_private(address) or is_public_address(address)


def port_allowed(port: int, address: IPAddress | None, policy: EgressPolicy) -> bool:
    """Public targets use the configured ports; explicitly allowed private targets any port."""
    if port in policy.allowed_ports:
        return True
    return address is not None and policy.in_allowed_private(address)


def _split_authority(netloc: str) -> tuple[str, str | None]:
    """(host text, port text or None) from an authority without userinfo."""
    if netloc.startswith("["):
        end = netloc.find("]")
        if end == -1:
            raise InvalidUrl("the host has an unclosed '['")
        host, rest = netloc[1:end], netloc[end + 1 :]
        if rest == "":
            return "[" + host + "]", None
        if not rest.startswith(":"):
            raise InvalidUrl("unexpected characters after the bracketed host")
        return "[" + host + "]", rest[1:]
    if netloc.count(":") > 1:
        raise InvalidUrl("an IPv6 address must be written in brackets")
    host, sep, port = netloc.partition(":")
    return host, (port if sep else None)


def _parse_ipv6_literal(text: str) -> IPv6Address:
    inner = text[1:-1]
    if "%" in inner:
        raise InvalidUrl("IPv6 zone IDs are not allowed", forbidden=True)
    if inner[:1].lower() == "v":
        raise InvalidUrl("IPvFuture addresses are not allowed", forbidden=True)
    try:
        address = IPv6Address(inner)
    except ValueError as exc:
        raise InvalidUrl(f"{text} is not a valid IPv6 address") from exc
    return address


def _normalise_name(host: str) -> str:
    """Lower-case IDNA (UTS 46) ASCII form of a DNS name, trailing dot removed; raises InvalidUrl."""
    name = host[:-1] if host.endswith(".") else host
    if not name:
        raise InvalidUrl("the host is empty")
    if name.isascii():
        ascii_name = name.lower()
    else:
        import idna  # only for internationalised names: most hosts are ASCII (no cost at import)

        try:
            ascii_name = idna.encode(name, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise InvalidUrl(f"the host {host!r} is not a valid internationalised domain name") from exc
    if len(ascii_name) > MAX_HOST_LENGTH:
        raise InvalidUrl(f"the host is longer than {MAX_HOST_LENGTH} characters")
    labels = ascii_name.split(".")
    for label in labels:
        if not _LABEL.match(label):
            raise InvalidUrl(f"the host {host!r} is not a valid DNS name")
    return ascii_name


def _looks_numeric(name: str) -> bool:
    """A host a URL parser would read as IPv4 (its last label is a number)."""
    last = name.rstrip(".").rsplit(".", 1)[-1].lower()
    return bool(last) and bool(_NUMERIC_LABEL.match(last))


def _uts46_mapped(host: str) -> str:
    """`host` after UTS 46 mapping (what the IDNA encoding would see), for the IP literal checks.

    Full-width digits and dots, the ideographic full stop (U+3002) and the like map to ASCII, and
    a resolver would read the result as an IPv4 address; the literal checks must see that form,
    so that the answer when a URL is saved is the one given before a GET. A host that cannot be
    mapped is left as written (the name check refuses it).
    """
    if host.isascii():
        return host
    import idna

    try:
        return str(idna.uts46_remap(host, std3_rules=False, transitional=False))
    except (idna.IDNAError, ValueError):
        return host


def parse_host(host: str) -> tuple[str, IPAddress | None]:
    """(normalised host, IP literal or None); raises InvalidUrl for anything not canonical."""
    if not host:
        raise InvalidUrl("the URL has no host")
    if host.startswith("["):
        v6 = _parse_ipv6_literal(host)
        return str(v6), v6
    mapped = _uts46_mapped(host)
    if mapped != host and (_CANONICAL_IPV4.match(mapped) or _looks_numeric(mapped)):
        # An IPv4 address in another script's digits or dots: never canonical.
        reason = ""
        if _CANONICAL_IPV4.match(mapped):
            blocked = blocked_reason(IPv4Address(mapped))
            reason = f" (it reads as {mapped}, {blocked})" if blocked else f" (it reads as {mapped})"
        raise InvalidUrl(
            "an IPv4 address must be written in canonical dotted-decimal ASCII form (e.g. 203.0.113.7)" + reason,
            forbidden=True,
        )
    if _CANONICAL_IPV4.match(host):
        return host, IPv4Address(host)
    if _looks_numeric(host):
        raise InvalidUrl(
            "an IPv4 address must be written in canonical dotted-decimal form (e.g. 203.0.113.7)", forbidden=True
        )
    return _normalise_name(host), None


def parse_target(url: str) -> Target:
    """Strictly parse the scheme, host and port of `url`; raises InvalidUrl."""
    if _FORBIDDEN_URL_CHARS.search(url):
        raise InvalidUrl("the URL must not contain spaces, control characters or backslashes")
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise InvalidUrl("the URL must be absolute (http:// or https://)")
    scheme = scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise InvalidUrl("only http and https URLs are allowed", forbidden=True)
    authority_end = len(rest)
    for delimiter in "/?#":
        index = rest.find(delimiter)
        if index != -1:
            authority_end = min(authority_end, index)
    netloc = rest[:authority_end]
    if "@" in netloc:
        raise InvalidUrl("the URL must not contain user information (user:password@)", forbidden=True)
    host_text, port_text = _split_authority(netloc)
    host, address = parse_host(host_text)
    if port_text is None:
        return Target(scheme, host, DEFAULT_PORTS[scheme], False, address)
    if not _PORT.match(port_text) or not 0 < int(port_text) < 65536:
        raise InvalidUrl(f"{port_text!r} is not a valid port")
    return Target(scheme, host, int(port_text), True, address)


def _is_reserved_name(host: str) -> bool:
    return any(host == suffix or host.endswith("." + suffix) for suffix in _RESERVED_SUFFIXES)


def _is_loopback_name(host: str) -> bool:
    return any(host == name or host.endswith("." + name) for name in _LOOPBACK_NAMES)


def url_problems(url: str, policy: EgressPolicy, max_length: int = 2048) -> list[str]:
    """Write-time check of a postback URL template; an empty list means it is acceptable.

    Placeholders (`{name}`) may appear in the path, query and fragment only; the template is
    checked as written, so a placeholder (or any brace) before the path is a problem.
    """
    problems: list[str] = []
    if len(url) > max_length:
        problems.append(f"the URL must be at most {max_length} characters")
    scheme_end = url.find("://")
    authority_end = len(url)
    if scheme_end != -1:
        for delimiter in "/?#":
            index = url.find(delimiter, scheme_end + 3)
            if index != -1:
                authority_end = min(authority_end, index)
    head = url[:authority_end]
    if "{" in head or "}" in head:
        problems.append(
            "placeholders are allowed only in the path, query and fragment, not in the scheme, host or port"
        )
        return problems
    try:
        target = parse_target(url)
    except InvalidUrl as exc:
        problems.append(exc.reason)
        return problems
    problems.extend(host_problems(target, policy))
    problems.extend(port_problems(target, policy))
    if isinstance(target.address, IPv6Address) and url_host_text(url)[1:-1].lower() != target.host:
        problems.append(f"an IPv6 address must be written in canonical form ([{target.host}])")
    return problems


def host_problems(target: Target, policy: EgressPolicy) -> list[str]:
    """Host rules for a parsed target, applied at write time and again at send time."""
    if target.address is not None:
        reason = None if policy.in_allowed_private(target.address) else blocked_reason(target.address)
        return [] if reason is None else [f"the host {target.host} is {reason}"]
    loopback_name = _is_loopback_name(target.host)
    if loopback_name and not policy.allows_loopback:
        return [f"the host {target.host} is not a public host"]
    if not loopback_name and _is_reserved_name(target.host):
        return [f"the host {target.host} is a reserved, non-public name"]
    if not loopback_name and "." not in target.host:
        return [f"the host {target.host} must be a fully qualified domain name"]
    return []


def port_problems(target: Target, policy: EgressPolicy) -> list[str]:
    """Write-time port rule: allowed ports, or any port for an allowed private literal or loopback name.

    At send time the rule is applied to each resolved address instead (`port_allowed`), so a name
    that resolves into an explicitly allowed private range may use any port there.
    """
    private_ok = (target.address is not None and policy.in_allowed_private(target.address)) or (
        target.address is None and _is_loopback_name(target.host) and policy.allows_loopback
    )
    if private_ok or target.port in policy.allowed_ports:
        return []
    allowed = ", ".join(str(port) for port in sorted(policy.allowed_ports))
    return [f"port {target.port} is not allowed (allowed: {allowed})"]


def url_host_text(url: str) -> str:
    """The host exactly as written in `url` (brackets kept), for canonical-form checks."""
    rest = url.partition("://")[2]
    authority_end = len(rest)
    for delimiter in "/?#":
        index = rest.find(delimiter)
        if index != -1:
            authority_end = min(authority_end, index)
    return _split_authority(rest[:authority_end])[0]
