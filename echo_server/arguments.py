"""Argument types and the parser class shared by the commands (cli.py, client.py).

Each type turns one command-line word into a value or raises `argparse.ArgumentTypeError`
with a short reason; `OneLineParser` makes any usage error one line and exit status 2.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import NoReturn


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
