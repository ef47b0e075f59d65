"""Why a client was refused, kept for a minute, so that a page can show it.

A browser tells a page nothing when its WebSocket is refused: the page sees close code 1006 and
no reason. So the server keeps, for each client address, its last refusal (status, the one-line
message, the path) for REFUSAL_MEMORY_S, and the page asks for it over plain HTTP (`GET
/refusal`, endpoints.py) when its connection fails. Only the address itself is ever told, and
the store is bounded (the oldest entries go first).

Not a log: `log` lines are the server's record; this is the client's answer.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from echo_server import defaults
from echo_server.addresses import canonical_address
from echo_server.protocol.http import HttpError


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    message: str
    path: str
    at_s: float  # the loop's clock


class Refusals:
    """The last refusal of each client address, for a minute; at most `capacity` addresses."""

    def __init__(
        self,
        clock: Callable[[], float],
        memory_s: float = defaults.REFUSAL_MEMORY_S,
        capacity: int = defaults.REFUSAL_MEMORY_ADDRESSES,
    ) -> None:
        self._clock = clock
        self._memory_s = memory_s
        self._capacity = capacity
        self._by_address: OrderedDict[str, Refusal] = OrderedDict()

    def record(self, peer: str, path: str, error: HttpError) -> None:
        address = canonical_address(peer)
        self._by_address.pop(address, None)
        self._by_address[address] = Refusal(error.status, error.message, path, self._clock())
        while len(self._by_address) > self._capacity:
            self._by_address.popitem(last=False)

    def last(self, peer: str) -> Refusal | None:
        """This address's last refusal, if it is under a minute old."""
        address = canonical_address(peer)
        refusal = self._by_address.get(address)
        if refusal is None:
            return None
        if self._clock() - refusal.at_s > self._memory_s:
            del self._by_address[address]
            return None
        return refusal

    def age_s(self, refusal: Refusal) -> float:
        return self._clock() - refusal.at_s
