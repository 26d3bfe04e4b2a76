"""Cloud metadata addresses: never a postback target, whatever the configuration allows.

The instance metadata service (IMDS, `169.254.169.254` and `fd00:ec2::254`), the ECS task
metadata endpoint (`169.254.170.2`), the Amazon DNS/NTP addresses (`169.254.169.253`,
`169.254.169.123`, `fd00:ec2::23`, `fd00:ec2::123`) and whatever a provider adds there later all
live in IPv4 link-local `169.254.0.0/16` and in `fd00:ec2::/32`. Both ranges are treated as
metadata as a whole: `POSTBACKS_ALLOW_PRIVATE_TARGETS` may not name any part of them (the
settings refuse it) and the egress guard never lets them through (`EgressPolicy`).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

METADATA_NETWORKS: tuple[IPv4Network | IPv6Network, ...] = (
    IPv4Network("169.254.0.0/16"),
    IPv6Network("fd00:ec2::/32"),
)


def is_metadata_address(address: IPv4Address | IPv6Address) -> bool:
    """True for an address in a metadata range, including its IPv4-mapped IPv6 form."""
    candidates: list[IPv4Address | IPv6Address] = [address]
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        candidates.append(address.ipv4_mapped)
    return any(
        candidate.version == network.version and candidate in network
        for candidate in candidates
        for network in METADATA_NETWORKS
    )


def overlaps_metadata(network: IPv4Network | IPv6Network) -> bool:
    """True when `network` contains any metadata address (or is contained in a metadata range)."""
    if isinstance(network, IPv6Network) and network.network_address.ipv4_mapped is not None:
        # ::ffff:a.b.c.d/n names IPv4 addresses: judge the IPv4 range it covers.
        prefix = max(network.prefixlen - 96, 0)
        inner = IPv4Network(f"{network.network_address.ipv4_mapped}/{prefix}", strict=False)
        return overlaps_metadata(inner)
    return any(network.version == meta.version and network.overlaps(meta) for meta in METADATA_NETWORKS)
