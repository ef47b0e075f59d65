"""Series of numbers for the Live tab: the points published to each, the last few hundred kept.

A series is a name (`[A-Za-z0-9_.-]{1,64}`), an optional unit ("°C") and its last
SERIES_HISTORY_POINTS points, each a server time and a finite number. The built-in random walk
is the series `demo` (producers.py); the others are what people publish (publish.py). A page
that connects to /stream is first sent each series' history (`history_message`), then every
new point as it comes (`Point.message`), so a page opened late draws at once what it missed.

Every point goes through `Point.from_message`, whoever made it: its JSON is checked here,
strictly, because with --redis it comes from Redis, which anything on the network may write to.

Not here: who may publish and how (publish.py), sending (broadcast.py), the routes (routes.py).
"""

from __future__ import annotations

import json
import math
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from echo_server import defaults

SERIES_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
DEMO = "demo"  # the built-in random walk's series; nobody else may publish to it
MAX_UNIT_CHARS = 16
NAME_RULE = "a series name is 1-64 of A-Z a-z 0-9 _ . -"


def valid_name(name: str) -> bool:
    return SERIES_NAME_RE.fullmatch(name) is not None


def check_name(name: str) -> str:
    """`name` if it is a series name; ValueError saying what one is otherwise."""
    if not valid_name(name):
        raise ValueError(f"{name[:80]!r} is not a series name: {NAME_RULE}")
    return name


def finite_number(value: object, what: str = "the value") -> float:
    """A JSON number (int or float, not bool) that is finite as a float; ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number, not {json.dumps(value)[:40]}")
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        raise ValueError(f"{what} is too large") from None
    if not math.isfinite(number):
        raise ValueError(f"{what} must be a finite number")
    return number


def check_unit(unit: object) -> str:
    """A unit for an axis: text of at most MAX_UNIT_CHARS characters, no control characters."""
    if not isinstance(unit, str):
        raise ValueError("the unit must be text")
    if len(unit) > MAX_UNIT_CHARS or not unit.isprintable():
        raise ValueError(f"the unit must be at most {MAX_UNIT_CHARS} printable characters")
    return unit


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def load_json(text: str | bytes) -> Any:
    """JSON without NaN or Infinity (Python's json takes them; they are not JSON).

    ValueError for anything that is not JSON, nested too deeply ("[[[[...") included.
    """
    try:
        return json.loads(text, parse_constant=_no_constants)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def load_json_object(data: str | bytes, max_bytes: int) -> dict[str, Any]:
    """A message from elsewhere (Redis, a client) that must be a JSON object in text of at most
    `max_bytes`; ValueError saying what it is instead."""
    if not isinstance(data, str):
        raise ValueError("not text")
    if len(data) > max_bytes:
        raise ValueError(f"over {max_bytes} bytes")
    fields = load_json(data)
    if not isinstance(fields, dict):
        raise ValueError("not a JSON object")
    return fields


@dataclass(frozen=True, slots=True)
class Point:
    """One value of one series, at a server time (Unix seconds)."""

    series: str
    time_s: float
    value: float | int
    unit: str = ""

    def message(self) -> str:
        """What /stream clients are sent: {"series", "time", "value"} and "unit" if there is
        one; the demo series says "variable" too, as /stream did before there were series."""
        fields: dict[str, object] = {"series": self.series, "time": self.time_s}
        fields["value"] = self.value
        if self.unit:
            fields["unit"] = self.unit
        if self.series == DEMO:
            fields["variable"] = self.value
        return json.dumps(fields, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_message(cls, data: str | bytes) -> Point:
        """The point in a message made by `message`; ValueError if it is not one.

        Strict: text of at most SERIES_MAX_MESSAGE_BYTES, a JSON object, a series name, finite
        numbers, a short printable unit.
        """
        fields = load_json_object(data, defaults.SERIES_MAX_MESSAGE_BYTES)
        series = fields.get("series")
        if not isinstance(series, str):
            raise ValueError("no series name")
        check_name(series)
        time_s = finite_number(fields.get("time"), "the time")
        value = fields.get("value")
        finite_number(value)
        assert isinstance(value, int | float)  # finite_number checked it
        return cls(series, time_s, value, check_unit(fields.get("unit", "")))


class Series:
    """One series: its unit (the last one given) and its last `keep` points, oldest first."""

    __slots__ = ("name", "points", "unit")

    def __init__(self, name: str, keep: int) -> None:
        self.name = name
        self.unit = ""
        self.points: deque[tuple[float, float | int]] = deque(maxlen=keep)

    def add(self, point: Point) -> None:
        if point.unit:
            self.unit = point.unit
        self.points.append((point.time_s, point.value))

    def history_message(self) -> str:
        """{"series", "unit", "history": [[time, value], ...]}: what a new subscriber gets."""
        fields = {"series": self.name, "unit": self.unit, "history": list(self.points)}
        return json.dumps(fields, separators=(",", ":"), ensure_ascii=False)


class TooManySeriesError(Exception):
    """A new series would pass the most allowed (`--max-series`)."""


class SeriesStore:
    """Every series by name, at most `max_series` of them besides the built-in demo."""

    def __init__(
        self, max_series: int = defaults.MAX_SERIES, keep: int = defaults.SERIES_HISTORY_POINTS
    ) -> None:
        self.max_series = max_series
        self.keep = keep
        self._series: dict[str, Series] = {}
        self.points_added = 0

    def __len__(self) -> int:
        return len(self._series)

    def __iter__(self) -> Iterator[Series]:
        return iter(list(self._series.values()))

    def get(self, name: str) -> Series | None:
        return self._series.get(name)

    def has_room_for(self, name: str) -> bool:
        """Whether a point of series `name` can be kept: a known series, or room for a new one."""
        return name in self._series or name == DEMO or self.has_room_for_new(1)

    def has_room_for_new(self, count: int) -> bool:
        """Whether `count` more series (not the demo) fit."""
        return len(self._series) - (DEMO in self._series) + count <= self.max_series

    def add(self, point: Point) -> Series:
        """Keep `point`; TooManySeriesError if it starts a series there is no room for."""
        series = self._series.get(point.series)
        if series is None:
            if not self.has_room_for(point.series):
                raise TooManySeriesError(
                    f"there are {self.max_series} series already, the most allowed (--max-series)"
                )
            series = self._series[point.series] = Series(point.series, self.keep)
        series.add(point)
        self.points_added += 1
        return series
