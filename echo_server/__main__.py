"""`python -m echo_server` is the `echo-server` command.

`run` is also the console script's entry point. Its first act, before the slow imports of the
command line, is to make Ctrl-C a recorded event (see stopsignals.py): from here on no SIGINT
becomes a KeyboardInterrupt traceback, however early it comes.
"""

import sys

from echo_server.core import stopsignals


def run() -> int:
    stopsignals.record()
    # Imported here, not at the top: a Ctrl-C during these imports must find SIGINT recorded.
    from echo_server.cli import main  # noqa: PLC0415

    return main()


if __name__ == "__main__":
    sys.exit(run())
