"""What a publish request says: the points in `POST /publish/SERIES`, `GET /publish/SERIES?value=`
and `POST /publish`, read strictly into `series.Point`s or refused with a clear 400.

The forms (the body is UTF-8; a final newline, as `echo 21.7 | curl --data-binary @-` sends,
is fine):
- `POST /publish/temp` with `21.7`, or `{"value": 21.7, "unit": "°C"}`: one point of `temp`;
- `GET /publish/temp?value=21.7` (and `&unit=°C`): the same, for the simplest sensors;
- `POST /publish` with `{"temp": 21.7, "humidity": {"value": 40, "unit": "%"}}`: a point of
  each series named, all stamped with the same time.

Numbers are JSON numbers and must be finite (no NaN, no Infinity, no 1e999). Who may publish,
and the limit on series, are decided by the caller (endpoints.py); this module only reads.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from echo_server.app.series import Point, check_name, check_unit, finite_number, load_json
from echo_server.protocol.http import HttpError, Request

PUBLISH = "/publish"
USAGE = (
    'POST /publish/SERIES with a number or {"value": N, "unit": "U"}; '
    'GET /publish/SERIES?value=N; or POST /publish with {"SERIES": N, ...}.'
)


def is_publish_path(path: str) -> bool:
    return path == PUBLISH or path.startswith(PUBLISH + "/")


def points_from_request(request: Request, body: bytes, time_s: float) -> list[Point]:
    """The points a publish request asks for, at `time_s`; HttpError(400) saying what is wrong."""
    try:
        return _points(request, body, time_s)
    except ValueError as error:
        raise HttpError(400, f"{error}. {USAGE}") from None


def _points(request: Request, body: bytes, time_s: float) -> list[Point]:
    name = request.path.removeprefix(PUBLISH).removeprefix("/")
    if request.path != PUBLISH:
        check_name(name)
    if request.method == "GET":
        if not name:
            raise ValueError("No series: name it in the path")
        query = parse_qs(request.query, keep_blank_values=True)
        value_text = _one(query, "value")
        if value_text is None:
            raise ValueError("No value: give ?value=N")
        unit = _one(query, "unit") or ""
        return [_point(name, _json(value_text, "the value"), unit, time_s)]
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise ValueError("The body must be UTF-8 text") from None
    if not text.strip():
        raise ValueError("No value: the body is empty")
    given = _json(text, "the body")
    if name:
        if isinstance(given, dict) and "value" not in given:
            raise ValueError(f"Several series go to POST {PUBLISH}, not to {PUBLISH}/{name}")
        return [_one_series(name, given, time_s)]
    if not isinstance(given, dict) or not given:
        raise ValueError(f"POST {PUBLISH} takes a JSON object of series and values")
    return [_one_series(check_name(key), value, time_s) for key, value in given.items()]


def _one(query: dict[str, list[str]], key: str) -> str | None:
    values = query.get(key, [])
    if len(values) > 1:
        raise ValueError(f"?{key}= is given {len(values)} times")
    return values[0] if values else None


def _json(text: str, what: str) -> Any:
    try:
        return load_json(text)
    except ValueError:
        raise ValueError(f"Not a number or JSON in {what}: {text.strip()[:40]!r}") from None


def _one_series(name: str, given: Any, time_s: float) -> Point:
    """A number, or {"value": N} with an optional "unit"."""
    if not isinstance(given, dict):
        return _point(name, given, "", time_s)
    unknown = set(given) - {"value", "unit"}
    if unknown:
        raise ValueError(f"Unknown field {sorted(unknown)[0][:40]!r} for series {name!r}")
    return _point(name, given.get("value"), given.get("unit", ""), time_s)


def _point(name: str, value: Any, unit: Any, time_s: float) -> Point:
    finite_number(value, f"the value of {name!r}")
    return Point(name, time_s, value, check_unit(unit))
