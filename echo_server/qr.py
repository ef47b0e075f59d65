"""QR codes of the page's LAN address: as SVG for the page (`/qr.svg`), as text for a terminal.

The codes are made by segno. The terminal drawing is ours: two rows of modules per line of
half blocks (so the code is square and small), black on white by explicit colours, with a
white quiet zone, so a phone reads it the same in a dark terminal and in a light one (a drawing
in the terminal's own colours would come out inverted in one of them, which many readers miss).

Not here: which address to show (web.py, netinfo.py), when to print (cli.py).
"""

from __future__ import annotations

import io

import segno

# The quiet zone: 4 modules in the SVG, as the standard asks; 2 in a terminal, where space is
# short and the white frame is drawn by us (the terminal around it may be any colour).
SVG_BORDER_MODULES = 4
TERMINAL_BORDER_MODULES = 2
SVG_MODULE_PX = 8
# 256-colour escapes: black (16) on white (231), not the terminal's own "black" and "white",
# which themes remap (a dark theme's white is often grey).
BLACK_ON_WHITE = "\x1b[38;5;16m\x1b[48;5;231m"
RESET = "\x1b[0m"
# A pair of modules, top and bottom, each dark (True) or light, as one character.
HALF_BLOCKS = {(False, False): " ", (True, False): "▀", (False, True): "▄", (True, True): "█"}


def make(url: str) -> segno.QRCode:
    """The QR code of `url`: error correction M (a scratched screen still reads), no micro."""
    return segno.make(url, error="m", micro=False, boost_error=False)


def svg(url: str) -> bytes:
    """An SVG image of the code, black on white, with its URL as its title."""
    out = io.BytesIO()
    make(url).save(
        out,
        kind="svg",
        scale=SVG_MODULE_PX,
        border=SVG_BORDER_MODULES,
        dark="#000",
        light="#fff",
        title=url,
        xmldecl=False,
        svgclass="qr",
        lineclass=None,
    )
    return out.getvalue()


def terminal_lines(url: str, *, colour: bool = True) -> list[str]:
    """The code as lines of half blocks, two module rows a line; black on white if `colour`."""
    rows = [
        [bool(module) for module in row]
        for row in make(url).matrix_iter(border=TERMINAL_BORDER_MODULES)
    ]
    if len(rows) % 2:
        rows.append([False] * len(rows[0]))
    lines = []
    for top, bottom in zip(rows[::2], rows[1::2], strict=True):
        text = "".join(HALF_BLOCKS[pair] for pair in zip(top, bottom, strict=True))
        lines.append(f"{BLACK_ON_WHITE}{text}{RESET}" if colour else text)
    return lines
