"""echo_server: a WebSocket echo and push server on one select loop, with a browser test page.

Built on the handler API of simple-websocket-server 0.4.4; see connection.py for what this package
replaces in it and why.
"""

__version__ = "0.1.0"
