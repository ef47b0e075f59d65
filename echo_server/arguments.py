"""Argument types and the parser class shared by the commands (cli.py, client.py).

Each type turns one command-line word into a value or raises `argparse.ArgumentTypeError`
with a short reason; `OneLineParser` makes any usage error one line and exit status 2.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, NoReturn


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is a single line (and exit status 2), never a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def port_number(text: str) -> int:
    try:
        port = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0-65535: {port}")
    return port


def positive_int(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < 1e6:
        raise argparse.ArgumentTypeError(f"seconds must be above 0: {text}")
    return value


def rate(text: str) -> float:
    """A number of messages per second: 0 (no limit) or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of messages per second: {text!r}") from None
    if not 0 <= value < 1e9:
        raise argparse.ArgumentTypeError(f"a rate must be 0 (no limit) or more: {text}")
    return value


SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kib": 1024, "m": 1024**2, "mib": 1024**2}


def byte_size(text: str) -> int:
    """Parse `4096`, `64KiB`, `1MiB` (K and M are accepted for KiB and MiB)."""
    digits = text.strip().rstrip("bBiIkKmM")
    unit = text.strip()[len(digits) :].lower()
    if not digits.isdigit() or unit not in SIZE_UNITS:
        raise argparse.ArgumentTypeError(f"not a size in bytes (like 65536 or 1MiB): {text!r}")
    value = int(digits) * SIZE_UNITS[unit]
    if value < 1:
        raise argparse.ArgumentTypeError(f"size must be at least 1 byte: {text!r}")
    return value


def existing_file(text: str) -> str:
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"no such file: {text!r}")
    return text


def existing_dir(text: str) -> Path:
    if not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"no such folder: {text!r}")
    return Path(text)


def header_token(text: str) -> str:
    """A secret sent in an HTTP header (`Authorization: Bearer ...`): visible ASCII, no spaces.

    Anything else could never match what a client sends, so it is refused at start. The token
    is not quoted in the error: it is a secret.
    """
    if not text or not all("!" <= char <= "~" for char in text):
        raise argparse.ArgumentTypeError(
            "the token must be visible ASCII characters, no spaces (it travels in an HTTP header)"
        )
    return text


_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def subprotocol_name(text: str) -> str:
    """A WebSocket subprotocol name (`ocpp1.6`, `graphql-transport-ws`): an HTTP token."""
    if not text or not set(text) <= _TOKEN_CHARS:
        raise argparse.ArgumentTypeError(
            f"not a subprotocol name (letters, digits and !#$%&'*+-.^_`|~, like ocpp1.6): {text!r}"
        )
    return text


def on_off(text: str) -> bool:
    """`on` or `off` (also yes/no, true/false, 1/0), for a feature that is on or off."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS - {""}:
        return False
    raise argparse.ArgumentTypeError(f"not on or off: {text!r}")


class Repeatable(argparse.Action):
    """A repeatable option (like action="append"), whose values given on the command line
    replace its default (which may come from the environment) instead of adding to it."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        given = f"_{self.dest}_given"  # set once the command line has given one
        items = (
            list(getattr(namespace, self.dest, None) or [])
            if getattr(namespace, given, False)
            else []
        )
        items.append(values)
        setattr(namespace, self.dest, items)
        setattr(namespace, given, True)


# Options from the environment: ECHO_SERVER_<OPTION>, the command line winning.

ENVIRONMENT_PREFIX = "ECHO_SERVER_"
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", ""})


def environment_name(option: str) -> str:
    """`--max-connections` -> `ECHO_SERVER_MAX_CONNECTIONS`."""
    return ENVIRONMENT_PREFIX + option.lstrip("-").replace("-", "_").upper()


def apply_environment(parser: argparse.ArgumentParser, environ: dict[str, str]) -> None:
    """Make ECHO_SERVER_<OPTION> the default of each visible long option of `parser`.

    The value is checked as the command-line word would be (a bad one is a one-line usage
    error naming the variable); a flag takes 1/true/yes/on or 0/false/no/off; a repeatable
    option takes several values separated by spaces; a flag that sets a constant (`--no-mdns`)
    sets it when true. The command line still wins.
    """
    for action in parser._actions:
        longs = [flag for flag in action.option_strings if flag.startswith("--")]
        if not longs or action.help == argparse.SUPPRESS or action.dest == "help":
            continue
        name = environment_name(longs[0])
        if name not in environ:
            continue
        try:
            value = _environment_value(action, environ[name])
        except argparse.ArgumentTypeError as error:
            parser.error(f"{name}: {error}")
        parser.set_defaults(**{action.dest: value})


def _environment_value(action: argparse.Action, text: str) -> object:
    if isinstance(action, argparse._StoreTrueAction | argparse._StoreConstAction):
        word = text.strip().lower()
        if word not in TRUE_WORDS | FALSE_WORDS:
            raise argparse.ArgumentTypeError(f"not yes or no: {text!r}")
        if isinstance(action, argparse._StoreTrueAction):
            return word in TRUE_WORDS
        return action.const if word in TRUE_WORDS else action.default
    if isinstance(action, argparse._AppendAction | Repeatable):
        return [_convert(action, word) for word in text.split()]
    return _convert(action, text)


def _convert(action: argparse.Action, text: str) -> object:
    convert = action.type if callable(action.type) else str
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a valid value: {text!r}") from None
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {choices}")
    return value
