"""The page's `.local` name (`--mdns`), announced and withdrawn on a LAN of our own.

Only ever inside network namespaces the test makes (tests/netns.py): the page server runs in a
server namespace, and a client namespace joined to it by a veth pair resolves the name and
browses the services with zeroconf, as a phone on the same Wi-Fi would. Nothing is announced
on this machine's own links: every other test that uses --lan passes --no-mdns (or runs `ws`,
which announces nothing).
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest
from conftest import StartServer
from netns import Link, linked_namespaces
from support import ECHO_SERVER, ServerProcess

from echo_server import defaults
from echo_server.cli import build_parser, mdns_wanted
from echo_server.mdns import candidates, mdns_name

TIMEOUT_S = 20.0  # an announcement probes the network for a couple of seconds
WS_PORT = 8123  # only told to the page (and put in the TXT record): nothing listens there
ANNOUNCED_RE = r"on this network also as http://([a-z0-9-]+)\.local:(\d+)/ \(mDNS\)"

# Run in the client namespace: find the service and the host by their names, then fetch the
# page from the address found, as a phone would. Prints one JSON object.
RESOLVE = """
import json, sys, urllib.request
from zeroconf import AddressResolver, IPVersion, Zeroconf
name = sys.argv[1]
zeroconf = Zeroconf(ip_version=IPVersion.V4Only)
try:
    info = zeroconf.get_service_info("_http._tcp.local.", name + "._http._tcp.local.", 5000)
    host = AddressResolver(name + ".local.")
    found = host.request(zeroconf, 5000)
finally:
    zeroconf.close()
answer = {"service": None, "host": host.parsed_addresses() if found else []}
if info is not None:
    answer["service"] = {
        "port": info.port,
        "server": info.server,
        "txt": {k.decode(): (v or b"").decode() for k, v in info.properties.items()},
        "addresses": info.parsed_addresses(),
    }
    url = "http://%s:%d/" % (answer["host"][0], info.port)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as page:
        answer["page"] = [page.status, page.read().decode()[:200]]
print(json.dumps(answer))
"""

# Run in the client namespace: a service browser that prints each change as it sees it, until
# its standard input ends (bounded by argv[1] seconds).
WATCH = """
import select, sys, time
from zeroconf import IPVersion, ServiceBrowser, Zeroconf
zeroconf = Zeroconf(ip_version=IPVersion.V4Only)
def changed(zeroconf, service_type, name, state_change):
    print(state_change.name, name, flush=True)
browser = ServiceBrowser(zeroconf, "_http._tcp.local.", handlers=[changed])
select.select([sys.stdin], [], [], float(sys.argv[1]))
zeroconf.close()
"""


@pytest.fixture
def lan() -> Iterator[Link]:
    with linked_namespaces("mdns") as link:
        yield link


def start_page_server(start_server: StartServer, lan: Link, *options: str) -> ServerProcess:
    """`web --lan` in the server namespace, on a free port there."""
    command = lan.run(lan.server, ECHO_SERVER)
    args = ("web", "--lan", "--port", "0", "--ws-port", str(WS_PORT), *options)
    return start_server(*args, command=command)


def announced(server: ServerProcess) -> tuple[str, int]:
    found = server.wait_for_output(ANNOUNCED_RE, TIMEOUT_S)
    return found.group(1), int(found.group(2))


def resolve(lan: Link, name: str) -> dict[str, object]:
    done = subprocess.run(
        lan.python(lan.client, "-c", RESOLVE, name),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S + 10,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answer: dict[str, object] = json.loads(done.stdout)
    return answer


def test_with_lan_the_page_is_announced_as_echo_server_local_with_the_ws_port_in_txt(
    start_server: StartServer, lan: Link
) -> None:
    started_s = time.monotonic()
    server = start_page_server(start_server, lan)
    name, port = announced(server)
    announce_s = time.monotonic() - started_s
    assert (name, port) == (defaults.MDNS_NAME, server.port)
    answer = resolve(lan, name)
    assert answer["host"] == [lan.server_address]
    assert answer["service"] == {
        "port": server.port,
        "server": f"{name}.local.",
        "txt": {"path": "/", "ws_port": str(WS_PORT)},
        "addresses": [lan.server_address],
    }
    assert isinstance(answer["page"], list)
    status, page = answer["page"]
    assert status == 200
    assert "<!doctype html>" in str(page).lower()
    print(f"announced in {announce_s:.2f} s from the start of the process")


def test_a_name_taken_on_the_network_gets_the_next_number(
    start_server: StartServer, lan: Link
) -> None:
    first = start_page_server(start_server, lan, "--mdns", "kitchen")
    assert announced(first)[0] == "kitchen"
    second = start_page_server(start_server, lan, "--mdns", "kitchen")
    assert announced(second)[0] == "kitchen-2"
    service = resolve(lan, "kitchen-2")["service"]
    assert isinstance(service, dict)
    assert service["port"] == second.port


def test_a_clean_stop_withdraws_the_name_at_once(start_server: StartServer, lan: Link) -> None:
    server = start_page_server(start_server, lan, "--mdns", "leaving")
    announced(server)
    watcher = subprocess.Popen(
        lan.python(lan.client, "-c", WATCH, str(TIMEOUT_S * 2)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert watcher.stdout is not None
    try:
        assert watcher.stdout.readline().split() == ["Added", "leaving._http._tcp.local."]
        assert server.stop(signal.SIGTERM) == 0
        # Without the goodbye the browser would keep it until its records expire (minutes).
        stopped_s = time.monotonic()
        assert watcher.stdout.readline().split() == ["Removed", "leaving._http._tcp.local."]
        assert time.monotonic() - stopped_s < 5.0
    finally:
        watcher.communicate(timeout=TIMEOUT_S)  # closes its standard input: it ends
    assert "withdrawn" in server.output()
    assert "Traceback" not in server.output()


# Which name, from the options: no network needed.


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["web"], None),
        (["web", "--lan"], defaults.MDNS_NAME),
        (["web", "--lan", "--mdns"], defaults.MDNS_NAME),
        (["web", "--lan", "--mdns", "Pi-Kitchen"], "pi-kitchen"),
        (["web", "--lan", "--no-mdns"], None),
        (["demo", "--lan", "--mdns", "lab.local"], "lab"),
    ],
)
def test_mdns_is_on_with_lan_unless_no_mdns(argv: list[str], name: str | None) -> None:
    assert mdns_wanted(build_parser({}).parse_args(argv)) == name


def test_no_mdns_from_the_environment_turns_it_off() -> None:
    args = build_parser({"ECHO_SERVER_NO_MDNS": "1"}).parse_args(["web", "--lan"])
    assert mdns_wanted(args) is None


@pytest.mark.parametrize("text", ["", "-pi", "pi-", "pi_kitchen", "a.b", "x" * 61, "pi kitchen"])
def test_a_name_that_cannot_be_a_dns_label_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"not a \.local name"):
        mdns_name(text)


def test_the_numbered_names_follow_the_name() -> None:
    assert candidates("pi", 3) == ["pi", "pi-2", "pi-3"]


def test_the_announced_line_is_what_the_readme_shows() -> None:
    assert re.search(
        ANNOUNCED_RE, "  on this network also as http://echo-server.local:8000/ (mDNS)"
    )
