"""`python -m echo_server` is the `echo-server` command."""

import sys

from echo_server.cli import main

sys.exit(main())
