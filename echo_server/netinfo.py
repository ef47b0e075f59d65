"""This machine's own network addresses, for the URLs printed by `--lan`, and URL host quoting.

It only reads what the kernel reports about local interfaces: it sends no packet anywhere.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct
import sys
from pathlib import Path

from echo_server import defaults

try:  # Unix: an interface's address by ioctl. Elsewhere the resolver's answer is used instead.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

SIOCGIFADDR = 0x8915  # Linux ioctl: an interface's IPv4 address
IF_INET6 = Path("/proc/net/if_inet6")


def has_ipv6() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::", 0))
    except OSError:
        return False
    return True


def any_address() -> str:
    """The address that means "every interface": dual-stack `::` where IPv6 works."""
    return defaults.LAN_HOST if has_ipv6() else defaults.LAN_HOST_V4_ONLY


def lan_addresses() -> list[str]:
    """IPv4 then global IPv6 addresses of this machine that other machines could reach."""
    linux = sys.platform.startswith("linux") and fcntl is not None
    found = _linux_ipv4() + _linux_ipv6() if linux else []
    if not found:
        found = _resolver_addresses()
    usable = []
    for text in dict.fromkeys(found):
        address = ipaddress.ip_address(text)
        if not (address.is_loopback or address.is_link_local or address.is_unspecified):
            usable.append(text)
    return usable


def _linux_ipv4() -> list[str]:
    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            with contextlib.suppress(OSError):
                reply = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, request)
                found.append(socket.inet_ntoa(reply[20:24]))
    return found


def _linux_ipv6() -> list[str]:
    found = []
    with contextlib.suppress(OSError):
        for line in IF_INET6.read_text().splitlines():
            hex_address = line.split()[0]
            found.append(str(ipaddress.IPv6Address(bytes.fromhex(hex_address))))
    return found


def _resolver_addresses() -> list[str]:
    with contextlib.suppress(OSError):
        infos = socket.getaddrinfo(socket.gethostname(), None, type=socket.SOCK_STREAM)
        return [str(info[4][0]) for info in infos]
    return []
