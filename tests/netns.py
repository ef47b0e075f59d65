"""Hosts of our own for the tests: network namespaces joined by veth pairs (needs root).

Addresses come from TEST-NET-2 (198.51.100.0/24, RFC 5737), so nothing sent on these links can
mean anything anywhere else, and nothing leaves the machine. Whatever a test makes here it
deletes at the end; without the right to make namespaces the test skips, except in CI (CI set),
where it fails: CI runs as root.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

TIMEOUT_S = 10.0


def ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )


def must(*args: str) -> None:
    done = ip(*args)
    assert done.returncode == 0, f"ip {' '.join(args)}: {done.stderr.strip()}"


def free_test_net_2_pair() -> tuple[str, str]:
    """Two addresses of a /30 in 198.51.100.0/24 that no interface here uses yet.

    The start depends on the PID, so that two test runs on one machine pick different links.
    """
    in_use = ip("-o", "-4", "addr", "show").stdout
    for offset in range(63):
        base = 4 * (1 + (os.getpid() + offset) % 63)
        pair = (f"198.51.100.{base + 1}", f"198.51.100.{base + 2}")
        if f" {pair[0]}/" not in in_use and f" {pair[1]}/" not in in_use:
            return pair
    raise AssertionError("no free /30 left in 198.51.100.0/24")


def make_namespace(name: str) -> None:
    """`ip netns add`, or skip (fail in CI) when this process may not."""
    created = ip("netns", "add", name)
    if created.returncode != 0:
        reason = f"cannot create a network namespace (ip netns add): {created.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run these tests as root or with CAP_NET_ADMIN")
        pytest.skip(reason)


@dataclass
class Link:
    """Two hosts on one link: a server namespace and a client namespace."""

    server: str  # the namespaces' names
    client: str
    server_address: str
    client_address: str

    def run(self, namespace: str, argv: Sequence[str]) -> list[str]:
        """The command line that runs `argv` in `namespace`."""
        return ["ip", "netns", "exec", namespace, *argv]

    def python(self, namespace: str, *argv: str) -> list[str]:
        return self.run(namespace, [sys.executable, *argv])


@contextmanager
def linked_namespaces(tag: str) -> Iterator[Link]:
    """Two new namespaces, each with its loopback up, joined by a veth pair, multicast routed
    over it (mDNS), on a /30 of TEST-NET-2; all deleted at the end."""
    pid = os.getpid()
    server, client = f"echo-{tag}-s{pid}", f"echo-{tag}-c{pid}"
    server_end, client_end = f"evs{pid}"[:15], f"evc{pid}"[:15]  # at most 15 bytes
    make_namespace(server)
    try:
        make_namespace(client)
        server_address, client_address = free_test_net_2_pair()
        must("link", "add", server_end, "type", "veth", "peer", "name", client_end)
        for namespace, end, address in (
            (server, server_end, server_address),
            (client, client_end, client_address),
        ):
            must("link", "set", end, "netns", namespace)
            must("-n", namespace, "addr", "add", f"{address}/30", "dev", end)
            must("-n", namespace, "link", "set", end, "up")
            must("-n", namespace, "link", "set", "lo", "up")
            must("-n", namespace, "route", "add", "224.0.0.0/4", "dev", end)
        yield Link(server, client, server_address, client_address)
    finally:
        for namespace in (server, client):
            ip("netns", "delete", namespace)  # takes its end of the pair, and so the pair
        ip("link", "delete", server_end)  # a pair whose end never made it into a namespace
        listed = ip("netns", "list").stdout.split()
        assert server not in listed and client not in listed, "a namespace was left behind"


@contextmanager
def namespace_beside_this_one(tag: str) -> Iterator[tuple[str, str, str]]:
    """A new namespace joined to this one by a veth pair, on a /30 of TEST-NET-2:
    (its name, this side's address, its side's address); deleted at the end."""
    pid = os.getpid()
    name = f"echo-{tag}-{pid}"
    outside, inside = f"evh{pid}"[:15], f"evn{pid}"[:15]  # interface names: at most 15 bytes
    make_namespace(name)
    try:
        here, there = free_test_net_2_pair()
        must("link", "add", outside, "type", "veth", "peer", "name", inside)
        must("link", "set", inside, "netns", name)
        must("addr", "add", f"{here}/30", "dev", outside)
        must("link", "set", outside, "up")
        must("-n", name, "addr", "add", f"{there}/30", "dev", inside)
        must("-n", name, "link", "set", inside, "up")
        must("-n", name, "link", "set", "lo", "up")
        yield name, here, there
    finally:
        # Deleting the namespace destroys its end of the pair, and with it ours; the explicit
        # delete covers a pair whose end never made it into the namespace.
        ip("netns", "delete", name)
        ip("link", "delete", outside)
        assert name not in ip("netns", "list").stdout.split(), f"namespace {name} left behind"
