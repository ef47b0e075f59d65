"""A `.local` name for the page on the LAN (`--mdns NAME`): `NAME.local` and an `_http._tcp`
service, announced with zeroconf (multicast DNS, RFC 6762 and 6763).

The page server announces `NAME.local` (the machine's LAN addresses) and the service
`NAME._http._tcp.local.` for its port, with the WebSocket port and the page's path in the TXT
record (`ws_port=8001`, `path=/`), so that a phone or laptop on the same network opens
`http://NAME.local:8000/` and a service browser finds the page. If someone on the network
answers for `NAME.local` already, or has the service name, the next free `NAME-2`, `NAME-3`, ...
is taken. A clean stop withdraws both (goodbye packets: browsers forget it at once).

zeroconf runs its own thread (its asyncio loop); announcing takes a second or two of probing,
so it happens in a thread of ours too, never on the page server's loop: the loop learns the
outcome through `call_soon_threadsafe`, and only after its loop has returned does the command
withdraw the name (`close`, bounded by MDNS_STOP_TIMEOUT_S). zeroconf is imported in that
thread as well: its import takes a tenth of a second that the page server's start need not wait.

Not here: when to announce (cli.py: on with --lan unless --no-mdns), what the page shows.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import re
import threading
from collections.abc import Callable, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

from echo_server import defaults
from echo_server.core.loop import Loop

if TYPE_CHECKING:
    from zeroconf import ServiceInfo, Zeroconf

log = logging.getLogger(__name__)

SERVICE_TYPE = "_http._tcp.local."
# A DNS label, with room left for "-NN": letters, digits and inner hyphens.
NAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,58}[A-Za-z0-9])?")


def mdns_name(text: str) -> str:
    """A name to announce as NAME.local (argparse type): 1-60 letters, digits, inner hyphens."""
    name = text.strip().removesuffix(".local")
    if NAME_RE.fullmatch(name) is None:
        raise argparse.ArgumentTypeError(
            f"not a .local name: {text!r} (1-60 letters, digits and hyphens, not at either end)"
        )
    return name.lower()


def candidates(name: str, most: int = defaults.MDNS_MAX_NUMBER) -> list[str]:
    """The names to try, in order: NAME, NAME-2, ..., NAME-`most`."""
    return [name] + [f"{name}-{number}" for number in range(2, most + 1)]


class Phase(Enum):
    NEW = "new"
    ANNOUNCING = "announcing"  # probing the network for a free name, in our thread
    ANNOUNCED = "announced"
    FAILED = "failed"  # no multicast here, no address, no free name: the page works without
    CLOSED = "closed"  # withdrawn (or never announced) and zeroconf closed


class Announcer:
    """Announces the page at `port` (and `ws_port` in TXT) as `name`.local, off the loop.

    `on_announced(name)` and `on_failed(reason)` run on `loop`, once, when the outcome is known.
    """

    def __init__(
        self,
        loop: Loop,
        name: str,
        *,
        port: int,
        ws_port: int,
        addresses: Sequence[str],
        on_announced: Callable[[str], None],
        on_failed: Callable[[str], None],
    ) -> None:
        self.loop = loop
        self.name = name
        self.port = port
        self.ws_port = ws_port
        self.addresses = list(addresses)
        self.phase = Phase.NEW
        self._on_announced = on_announced
        self._on_failed = on_failed
        self._lock = threading.Lock()  # phase, _zeroconf and _info: our thread and close()
        self._zeroconf: Zeroconf | None = None
        self._info: ServiceInfo | None = None
        self._thread = threading.Thread(target=self._announce, name="mdns", daemon=True)

    def start(self) -> None:
        self.phase = Phase.ANNOUNCING
        self._thread.start()

    def close(self, timeout_s: float = defaults.MDNS_STOP_TIMEOUT_S) -> None:
        """Withdraw the name (goodbye packets) and close zeroconf; at most about `timeout_s`.

        Blocking: call it once the loop has returned, never from a loop callback.
        """
        if self.phase is Phase.NEW:
            self.phase = Phase.CLOSED
            return
        self._thread.join(timeout_s)  # an announcement under way ends within its probing
        with self._lock:
            zeroconf, info = self._zeroconf, self._info
            self.phase = Phase.CLOSED
        if zeroconf is None:
            return
        try:
            if info is not None:
                zeroconf.unregister_service(info)
                log.info("mDNS: %s withdrawn", info.server)
        except Exception as error:  # a network gone away: the name expires by itself
            log.warning("mDNS: could not withdraw %s: %s", self.name, error)
        finally:
            zeroconf.close()

    # In our thread.

    def _announce(self) -> None:
        try:
            name = self._register()
        except Exception as error:
            reason = str(error) or type(error).__name__
            with self._lock:
                if self.phase is Phase.ANNOUNCING:
                    self.phase = Phase.FAILED
            self.loop.call_soon_threadsafe(lambda: self._on_failed(reason))
            return
        self.loop.call_soon_threadsafe(lambda: self._on_announced(name))

    def _register(self) -> str:
        from zeroconf import (  # noqa: PLC0415 - here, in this thread: see the module docstring
            InterfaceChoice,
            IPVersion,
            NonUniqueNameException,
            ServiceInfo,
            Zeroconf,
        )

        if not self.addresses:
            raise OSError("no LAN address to announce")
        packed = [ipaddress.ip_address(address).packed for address in self.addresses]
        zeroconf = Zeroconf(interfaces=InterfaceChoice.All, ip_version=IPVersion.V4Only)
        with self._lock:
            if self.phase is not Phase.ANNOUNCING:  # closed meanwhile
                zeroconf.close()
                raise OSError("stopped")
            self._zeroconf = zeroconf
        properties: dict[str | bytes, Any] = {"path": "/", "ws_port": str(self.ws_port)}
        for candidate in candidates(self.name):
            if self._host_answers(zeroconf, candidate):
                log.info("mDNS: %s.local is taken on this network", candidate)
                continue
            info = ServiceInfo(
                SERVICE_TYPE,
                f"{candidate}.{SERVICE_TYPE}",
                addresses=packed,
                port=self.port,
                properties=properties,
                server=f"{candidate}.local.",
            )
            try:
                zeroconf.register_service(info, allow_name_change=False)
            except NonUniqueNameException:
                log.info("mDNS: the service %s is taken on this network", candidate)
                continue
            with self._lock:
                if self.phase is not Phase.ANNOUNCING:
                    raise OSError("stopped")
                self._info = info
                self.phase = Phase.ANNOUNCED
            return candidate
        raise OSError(f"no free name from {self.name} to {candidates(self.name)[-1]}")

    @staticmethod
    def _host_answers(zeroconf: Zeroconf, name: str) -> bool:
        """Whether some host on the network answers for NAME.local (within a second)."""
        # Public (zeroconf's documented API), but missing from its __all__.
        from zeroconf import AddressResolver  # type: ignore[attr-defined]  # noqa: PLC0415

        resolver = AddressResolver(f"{name}.local.")
        with contextlib.suppress(Exception):
            return bool(resolver.request(zeroconf, round(defaults.MDNS_QUERY_TIMEOUT_S * 1000)))
        return False
