"""This machine's names, for `/notify`'s Host check; none of them ever looked up in the loop.

Those known without asking a resolver (localhost, the loopback addresses, the host name) are
known at once; the fully qualified name once a daemon thread has looked it up, at start and
then from a loop timer every few minutes (a DHCP lease may rename the machine). Looking it up
in the loop would stall every client for as long as a slow resolver takes, once per request.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable

from echo_server.addresses import host_name, is_loopback
from echo_server.core.loop import Loop

log = logging.getLogger(__name__)


def names_known_without_dns() -> frozenset[str]:
    """localhost and the host name: `gethostname` is a system call, it asks no resolver."""
    return frozenset({"localhost", socket.gethostname().lower()})


class MachineNames:
    """The names a Host header may use for this machine.

    `lookup_fqdn` (socket.getfqdn; tests pass their own) may block for as long as the resolver
    likes: it runs in a daemon thread, one at a time, started by `refresh()`. Its answer is
    swapped in whole (one assignment, atomic), so `allows` never waits and never sees half a set.
    """

    def __init__(self, lookup_fqdn: Callable[[], str] = socket.getfqdn) -> None:
        self._lookup_fqdn = lookup_fqdn
        self.names = names_known_without_dns()
        self._lookup: threading.Thread | None = None

    @classmethod
    def started(
        cls, loop: Loop, refresh_s: float, lookup_fqdn: Callable[[], str] = socket.getfqdn
    ) -> MachineNames:
        """Made at start: looking the name up now, and again every `refresh_s`."""
        names = cls(lookup_fqdn)
        names.refresh()
        loop.call_every(refresh_s, names.refresh_now)
        return names

    def allows(self, host_header: str | None) -> bool:
        """Whether a Host header names this machine: localhost, a loopback address, its names."""
        name = host_name(host_header)
        return bool(name) and (name in self.names or is_loopback(name))

    def refresh_now(self) -> None:
        """`refresh()`, for a timer."""
        self.refresh()

    def refresh(self) -> bool:
        """Start a lookup in a daemon thread, unless one is still running; never blocks."""
        if self._lookup is not None and self._lookup.is_alive():
            return False  # a resolver that hangs must not pile up threads
        self._lookup = threading.Thread(target=self._look_up, name="machine-names", daemon=True)
        self._lookup.start()
        return True

    def _look_up(self) -> None:
        """In the thread: the blocking lookup, then one assignment."""
        try:
            fqdn = self._lookup_fqdn().lower()
        except Exception as error:  # getfqdn does not raise; a lookup passed in might
            log.warning("looking up this machine's name failed: %s", error)
            return
        self.names = names_known_without_dns() | ({fqdn} if fqdn else set())
