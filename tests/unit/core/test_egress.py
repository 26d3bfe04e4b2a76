from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

import pytest

from functions.core.egress import (
    EgressPolicy,
    InvalidUrl,
    address_allowed,
    is_public_address,
    parse_target,
    port_allowed,
    url_problems,
)

pytestmark = pytest.mark.unit

PORTS = frozenset({80, 443, 8080, 8443})
DEFAULT = EgressPolicy(allowed_ports=PORTS)
LOOPBACK = EgressPolicy(allowed_ports=PORTS, allow_private=(ip_network("127.0.0.0/8"), ip_network("::1/128")))
ONLY_V4_LOOPBACK = EgressPolicy(allowed_ports=PORTS, allow_private=(ip_network("127.0.0.0/8"),))


@pytest.mark.parametrize(
    "url",
    [
        "https://tracker.example.com/cb?click={affS1}&status={conversionStatus}",
        "http://tracker.example.com/",
        "https://tracker.example.com:8443/p/{cid}#frag{deliveryId}",
        "https://TRACKER.Example.COM/cb",
        "https://tracker.example.com./cb",
        "https://bücher.example/cb",
        "http://8.8.8.8/cb",
        "http://[2606:4700:4700::1111]/cb",
        "https://a-b.c-d.example/{affS1}/{affS2}",
    ],
)
def test_good_urls_have_no_problems(url: str) -> None:
    assert url_problems(url, DEFAULT) == []


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://10.0.0.1", "private"),
        ("http://172.16.5.4/", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://127.0.0.1/", "loopback"),
        ("http://127.1", "canonical dotted-decimal"),
        ("http://2130706433", "canonical dotted-decimal"),
        ("http://0x7f.0.0.1", "canonical dotted-decimal"),
        ("http://017700000001", "canonical dotted-decimal"),
        ("http://1.2.3.04/", "canonical dotted-decimal"),
        ("http://0x7f000001/", "canonical dotted-decimal"),
        ("http://[::1]", "loopback"),
        ("http://[::ffff:127.0.0.1]", "IPv4-mapped"),
        ("http://[::ffff:7f00:1]", "IPv4-mapped"),
        ("http://[64:ff9b::a00:1]/", "NAT64"),
        ("http://[2002:c0a8:101::]/", "6to4"),
        ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "Teredo"),
        ("http://[fe80::1%25eth0]/", "zone ID"),
        ("http://[fd00:ec2::254]/", "metadata"),
        ("http://[2606:4700:4700:0::1111]/", "canonical form"),
        ("http://[v1.abc]/", "IPvFuture"),
        ("http://169.254.169.254", "metadata"),
        ("http://169.254.10.1/", "link-local"),
        ("http://100.64.0.1/", "carrier-grade NAT"),
        ("http://224.0.0.251/", "multicast"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://[::]/", "unspecified"),
        ("http://192.0.2.1/", "private or reserved"),
        ("http://240.0.0.1/", "reserved"),
        ("http://localhost", "not a public host"),
        ("http://api.localhost/", "not a public host"),
        ("http://printer.local/", "reserved, non-public name"),
        ("http://foo.internal", "reserved, non-public name"),
        ("http://nas.home.arpa/", "reserved, non-public name"),
        ("http://intranet/", "fully qualified"),
        ("ftp://x", "only http and https"),
        ("javascript:alert(1)", "absolute"),
        ("//tracker.example.com/cb", "absolute"),
        ("/relative/path", "absolute"),
        ("http://u:p@example.com", "user information"),
        ("http://user@example.com/", "user information"),
        ("http://{affS1}.example.com/", "placeholders are allowed only"),
        ("https://example.com{affS1}", "placeholders are allowed only"),
        ("https://example.com:{affS1}/", "placeholders are allowed only"),
        ("{affS1}://example.com/", "placeholders are allowed only"),
        ("http://example.com:22/", "port 22 is not allowed"),
        ("http://example.com:0/", "not a valid port"),
        ("http://example.com:65536/", "not a valid port"),
        ("http://example.com:+80/", "not a valid port"),
        ("http://example.com:/", "not a valid port"),
        ("http://exa mple.com/", "spaces"),
        ("http://example.com\\@evil.com/", "backslashes"),
        ("http://a..b.example/", "not a valid DNS name"),
        ("http://-a.example/", "not a valid DNS name"),
        ("http://under_score.example/", "not a valid DNS name"),
        ("http://%65xample.com/", "not a valid DNS name"),
    ],
)
def test_bad_urls_are_rejected_with_a_reason(url: str, fragment: str) -> None:
    problems = url_problems(url, DEFAULT)
    assert problems, url
    assert any(fragment in problem for problem in problems), problems


def test_url_longer_than_the_maximum_is_rejected() -> None:
    url = "https://tracker.example.com/" + "a" * 2100
    assert any("at most 2048" in p for p in url_problems(url, DEFAULT))
    assert url_problems("https://tracker.example.com/" + "a" * 10, DEFAULT, max_length=20) != []


def test_default_port_counts_against_the_allowed_ports() -> None:
    policy = EgressPolicy(allowed_ports=frozenset({8443}))
    assert url_problems("https://tracker.example.com:8443/", policy) == []
    assert any("port 443" in p for p in url_problems("https://tracker.example.com/", policy))


def test_loopback_literal_is_allowed_on_any_port_when_configured() -> None:
    assert url_problems("http://127.0.0.1:9999/cb?x={affS1}", LOOPBACK) == []
    assert url_problems("http://[::1]:9999/cb", LOOPBACK) == []
    assert url_problems("http://127.0.0.1:9999/cb", DEFAULT) != []


def test_private_cidr_allows_only_its_own_range() -> None:
    policy = EgressPolicy(allowed_ports=PORTS, allow_private=(ip_network("10.1.0.0/16"),))
    assert url_problems("http://10.1.2.3:7000/", policy) == []
    assert url_problems("http://10.2.0.1/", policy) != []


def test_localhost_is_allowed_only_when_both_loopback_ranges_are() -> None:
    assert url_problems("http://localhost:8000/cb", LOOPBACK) == []
    assert url_problems("http://app.localhost:8000/cb", LOOPBACK) == []
    assert url_problems("http://localhost:8000/cb", ONLY_V4_LOOPBACK) != []
    assert url_problems("http://localhost/cb", DEFAULT) != []


def test_allowing_loopback_does_not_allow_other_reserved_names() -> None:
    assert url_problems("http://foo.internal/", LOOPBACK) != []
    assert url_problems("http://10.0.0.1/", LOOPBACK) != []


def test_public_dns_name_on_a_disallowed_port_is_rejected_even_when_loopback_is_allowed() -> None:
    assert any("port 22" in p for p in url_problems("http://example.com:22/", LOOPBACK))


def test_parse_target_normalises_host_and_port() -> None:
    target = parse_target("HTTPS://Bücher.Example./p?q=1")
    assert (target.scheme, target.host, target.port, target.explicit_port) == (
        "https",
        "xn--bcher-kva.example",
        443,
        False,
    )
    assert target.host_header == "xn--bcher-kva.example"
    v6 = parse_target("http://[2606:4700::1111]:8080/")
    assert v6.address == IPv6Address("2606:4700::1111")
    assert v6.host_header == "[2606:4700::1111]:8080"


def test_parse_target_rejects_numeric_hosts() -> None:
    with pytest.raises(InvalidUrl):
        parse_target("http://2130706433/")


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.1",
        "127.0.0.1",
        "169.254.169.254",
        "100.64.0.1",
        "192.168.0.1",
        "224.0.0.1",
        "255.255.255.255",
        "0.0.0.0",
        "198.18.0.1",
        "192.88.99.1",
        "::1",
        "::",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::1",
        "2002:a00:1::1",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        "fd00:ec2::254",
        "fe80::1",
        "ff02::1",
        "2001:db8::1",
        "::7f00:1",
        "fec0::1",
    ],
)
def test_non_public_addresses_are_refused_at_send_time(address: str) -> None:
    parsed = ip_address(address)
    assert not is_public_address(parsed)
    assert not address_allowed(parsed, DEFAULT)


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "93.184.215.14", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"],
)
def test_public_addresses_and_their_embeddings_are_allowed(address: str) -> None:
    assert is_public_address(ip_address(address))
    assert address_allowed(ip_address(address), DEFAULT)


def test_allowed_private_range_lets_its_addresses_through() -> None:
    assert address_allowed(IPv4Address("127.0.0.1"), LOOPBACK)
    assert address_allowed(IPv6Address("::ffff:127.0.0.1"), LOOPBACK)
    assert address_allowed(IPv6Address("::1"), LOOPBACK)
    assert not address_allowed(IPv4Address("10.0.0.1"), LOOPBACK)
    assert not address_allowed(IPv6Address("::1"), ONLY_V4_LOOPBACK)


def test_port_rule_is_the_same_at_send_time() -> None:
    assert port_allowed(443, IPv4Address("8.8.8.8"), DEFAULT)
    assert not port_allowed(22, IPv4Address("8.8.8.8"), DEFAULT)
    assert port_allowed(22, IPv4Address("127.0.0.1"), LOOPBACK)
    assert not port_allowed(22, None, LOOPBACK)


@pytest.mark.parametrize(
    "url",
    [
        "http://１２７.０.０.１/",  # noqa: RUF001
        "http://127。0。0。1/",
        "http://169。254。169。254/latest/meta-data/",
        "http://０ｘ７ｆ．１/",  # noqa: RUF001
        "http://１０.０.０.１/",  # noqa: RUF001
        "http://８.８.８.８/",  # noqa: RUF001
        "http://127．0．0．1:8080/",  # noqa: RUF001
    ],
)
def test_ip_addresses_in_other_digits_or_dots_are_refused_when_saved_as_before_a_get(url: str) -> None:
    problems = url_problems(url, DEFAULT)
    assert problems and "canonical" in problems[0], problems
    with pytest.raises(InvalidUrl) as refused:
        parse_target(url)
    assert refused.value.forbidden


def test_the_refusal_of_a_unicode_ip_form_says_what_it_reads_as() -> None:
    assert "127.0.0.1, a loopback address" in url_problems("http://１２７.０.０.１/", DEFAULT)[0]  # noqa: RUF001


def test_internationalised_names_are_still_accepted() -> None:
    assert url_problems("https://bücher.example/cb", DEFAULT) == []
    assert url_problems("https://例え.テスト/cb", DEFAULT) == []


@pytest.mark.parametrize(
    "address", ["169.254.169.254", "169.254.170.2", "169.254.0.1", "fd00:ec2::254", "::ffff:169.254.169.254"]
)
def test_no_allowed_range_lets_a_metadata_address_through(address: str) -> None:
    everything = EgressPolicy(allowed_ports=PORTS, allow_private=(ip_network("0.0.0.0/0"), ip_network("::/0")))
    assert not address_allowed(ip_address(address), everything)
    assert url_problems(f"http://{address if ':' not in address else f'[{address}]'}/", everything)
