"""Host names and addresses as they appear in headers, URLs and sockets: parsed one way, here.

Pure functions of strings: nothing here resolves a name or touches a socket. The handshake
compares the hosts of Origin and Host with `parse_authority`; `/notify` asks `is_loopback` of
the peer and `host_name` of the Host header; the page server counts connections per
`canonical_address`; the command line prints URLs with `url_host`.
"""

from __future__ import annotations

import ipaddress
import re

# The host part of an authority, as browsers serialize it in Origin and Host: an ASCII name or
# IPv4 address (IDNs arrive as punycode), or a bracketed IPv6 literal; then an optional port.
# Userinfo ("@"), percent-encoding and anything else that could make two parsers disagree about
# which host is meant is refused outright.
_AUTHORITY_RE = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~-]+)(?::([0-9]{1,5}))?")


def parse_authority(authority: str) -> tuple[str, int | None] | None:
    """Split "host[:port]" into a lower-cased host name and a port; None if it is not one.

    IPv6 literals keep their brackets and are put in compressed form, so that "[::1]" and
    "[0:0::1]" name the same host; an invalid literal is refused. Port 0 and ports above 65535
    are refused. No IDN mapping or DNS is involved: names are compared as the bytes sent.
    """
    matched = _AUTHORITY_RE.fullmatch(authority)
    if matched is None:
        return None
    host, port_text = matched.group(1).lower(), matched.group(2)
    if host.startswith("["):
        try:
            host = f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        except ValueError:
            return None
    if port_text is None:
        return host, None
    port = int(port_text)
    if not 0 < port <= 65535:
        return None
    return host, port


def host_name(host_header: str | None) -> str:
    """The name part of a Host header, lower-cased and unbracketed: "[::1]:8001" -> "::1",
    "Pi:80" -> "pi"; "" when there is none or it does not parse."""
    parsed = parse_authority(host_header) if host_header else None
    if parsed is None:
        return ""
    return parsed[0].removeprefix("[").removesuffix("]")


def canonical_address(host: str) -> str:
    """A socket's peer address as one client: an IPv4-mapped IPv6 address (a dual-stack
    listener's view of an IPv4 client) as its IPv4 address, and no IPv6 zone."""
    bare = host.split("%", 1)[0]
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def is_loopback(host: str) -> bool:
    """An address in 127.0.0.0/8, or ::1, also as an IPv4-mapped address. A name (even
    "localhost") is not an address: nothing is looked up."""
    try:
        return ipaddress.ip_address(canonical_address(host)).is_loopback
    except ValueError:
        return False


def url_host(host: str) -> str:
    """`::1` -> `[::1]` (an IPv6 literal needs brackets in a URL); anything else unchanged."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
