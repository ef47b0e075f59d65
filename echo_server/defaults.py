"""Every default and limit of echo_server, in one place, with its unit in its name.

The command line (cli.py) and the README's options table read from here; nothing else hard-codes
these numbers. This module holds values only, no behaviour.
"""

from typing import Final

# Addresses and ports.
LOCAL_HOST: Final = "127.0.0.1"  # the default: reachable from this machine only
LAN_HOST: Final = "::"  # --lan: every interface, IPv4 and IPv6 (dual-stack socket)
LAN_HOST_V4_ONLY: Final = "0.0.0.0"  # --lan on a machine without IPv6
WS_PORT: Final = 8001
WEB_PORT: Final = 8000

# Connections.
MAX_CONNECTIONS: Final = 10_000
LISTEN_BACKLOG: Final = 1024
ACCEPTS_PER_WAKEUP: Final = 256  # bounded so that a connect storm cannot starve open clients

# Timeouts.
HANDSHAKE_TIMEOUT_S: Final = 10.0
PING_INTERVAL_S: Final = 20.0
PING_TIMEOUT_S: Final = 20.0
CLOSE_TIMEOUT_S: Final = 5.0

# Sizes.
MAX_MESSAGE_BYTES: Final = 1024 * 1024
MAX_REQUEST_HEAD_BYTES: Final = 8 * 1024
MAX_HEADER_LINES: Final = 100
WRITE_LIMIT_BYTES: Final = 1024 * 1024
RECV_CHUNK_BYTES: Final = 256 * 1024

# Extensions and subprotocols (protocol/deflate.py, protocol/handshake.py).
COMPRESSION: Final = True  # --compression: permessage-deflate when a client offers it
# The windows and zlib memory level of websockets' server defaults: about 38 KiB for a
# compressor and 11 KiB for a decompressor, not 260 KiB and 40 KiB at zlib's maxima.
DEFLATE_SERVER_MAX_WINDOW_BITS: Final = 12  # our compressor's window (9-15)
DEFLATE_CLIENT_MAX_WINDOW_BITS: Final = 12  # asked of clients that accept a limit (8-15)
DEFLATE_MEM_LEVEL: Final = 5
# zlib's default level. Measured on JSON with these windows: a third more ratio than level 1
# (7.8 against 5.8 on 4 KiB messages) for half again the time (46 against 32 us each).
DEFLATE_LEVEL: Final = 6
# Messages shorter than this go out uncompressed: deflate saves them a few bytes at most, and a
# connection that only sends such messages never makes a compressor.
DEFLATE_MIN_MESSAGE_BYTES: Final = 32

# Fairness: one loop turn parses at most this many frames from one client, then the others get
# their turn. A read of thousands of tiny messages (a flood to /chat, say) is handled over several
# turns instead of holding everyone up; a normal client never reaches it.
FRAMES_PER_TURN: Final = 64

# A line that a client (or Redis) can make us repeat at will is logged at most this often; the
# next one says how many were held back.
LOG_THROTTLE_S: Final = 10.0

# Push routes.
# /chat: messages per second one client may send (--rate-limit); it may save up this many
# seconds' worth for a burst. A person typing, or a page repeating "*" each second, is far below.
RATE_LIMIT_PER_S: Final = 100.0
RATE_LIMIT_BURST_S: Final = 2.0
TICK_INTERVAL_S: Final = 1.0
STREAM_MAX_GAP_S: Final = 1.0  # /stream: the value changes at random gaps of 0 to this
# Series (/publish, /stream): the points kept per series, for a page that connects later; the
# series one server keeps besides the built-in demo (--max-series); and the longest message of
# one point (ours are under 150 bytes; a longer one from Redis is not ours).
SERIES_HISTORY_POINTS: Final = 600
MAX_SERIES: Final = 64
SERIES_MAX_MESSAGE_BYTES: Final = 512

# Health and metrics: how often a loop timer measures how late the loop runs its timers.
LOOP_LAG_PROBE_S: Final = 0.5

# Fault knobs of the echo routes (`?delay=...`, see app/faults.py): each bounded, so that no
# knob lets one client use unbounded memory or CPU.
FAULT_MAX_DELAY_MS: Final = 10_000
FAULT_MAX_AFTER: Final = 1_000_000  # messages
FAULT_MAX_FRAGMENTS: Final = 4096  # per echoed message: fragment= is raised to keep to this
FAULT_MAX_REPEAT: Final = 16
FAULT_MAX_ECHO_BYTES: Final = 4 * 1024 * 1024  # what one message may make, repeats added up
FAULT_MIN_PING_S: Final = 0.1
FAULT_MAX_PING_S: Final = 3600.0
FAULT_MAX_PUSH_BYTES: Final = 64 * 1024
FAULT_MIN_PUSH_EVERY_MS: Final = 10
FAULT_MAX_PUSH_EVERY_MS: Final = 3_600_000

# Why a client was refused (GET /refusal on the WebSocket port): kept this long, for this many
# client addresses at most.
REFUSAL_MEMORY_S: Final = 60.0
REFUSAL_MEMORY_ADDRESSES: Final = 4096

# Static server (web.py).
# The whole request head, so a trickling client is cut off too: counted from the accept for a
# connection's first request, from the request's first byte for later ones. Also how long a
# response may go without the client taking a byte of it, before it is dropped.
WEB_REQUEST_TIMEOUT_S: Final = 10.0
# Between requests on a kept-alive connection: the next request's first byte must come by then.
WEB_KEEP_ALIVE_TIMEOUT_S: Final = 5.0
# A browser opens at most six connections to one host: a classroom of twenty before anyone waits.
WEB_MAX_CONNECTIONS: Final = 128
# One address (a browser or two on one machine) gets at most this share of the connections.
WEB_MAX_CONNECTIONS_PER_ADDRESS: Final = 16
# 503 answers to connections over a cap that are still draining the client's request; past this
# many at once, a refused connection is answered as far as its socket takes and closed at once.
WEB_MAX_REFUSALS: Final = 64
# After an error or a last response, how long and how much of what the client still sends is
# read and dropped, so the client gets the response instead of a reset.
WEB_LINGER_S: Final = 2.0
WEB_LINGER_MAX_BYTES: Final = 1024 * 1024
# A file goes out at most this much per writable event, so one download cannot starve the rest.
WEB_SEND_CHUNK_BYTES: Final = 1024 * 1024
# Out of file descriptors: stop accepting for this long instead of spinning on accept().
WEB_ACCEPT_PAUSE_S: Final = 0.1
# SIGINT/SIGTERM: responses under way get this long to finish, then everything is closed.
WEB_STOP_TIMEOUT_S: Final = 5.0

# Redis fan-out (--redis): the connections (redisbus.py) and the cluster on top (cluster.py).
REDIS_PORT: Final = 6379
REDIS_CONNECT_TIMEOUT_S: Final = 2.0  # TCP connect and AUTH/SELECT/PING, together
REDIS_REPLY_TIMEOUT_S: Final = 3.0  # a reply this late: the connection is taken for dead
REDIS_PING_INTERVAL_S: Final = 1.0  # an idle connection is pinged, so a dead one is noticed
REDIS_BACKOFF_MIN_S: Final = 0.1  # reconnecting: the first wait, doubled after each failure
REDIS_BACKOFF_MAX_S: Final = 5.0
REDIS_MAX_UNSENT_BYTES: Final = 16 * 1024 * 1024  # past this Redis is not keeping up: reconnect
# What comes from Redis is untrusted: any program with its address may write anything there.
REDIS_RECV_BYTES: Final = 256 * 1024  # read per wakeup; no more is read until it is handled
REDIS_REPLIES_PER_WAKEUP: Final = 256  # handled per wakeup; the rest on the next, after others
# One reply may exceed --max-message-size by this much (the framing, one statistics read);
# past it the connection is dropped and made again, so a huge reply is never held whole.
REDIS_REPLY_MARGIN_BYTES: Final = 1024 * 1024
# A Redis outage is logged at most once in this long (a flood of bad replies drops the
# connection each time); an outage that lasts REDIS_OUTAGE_REPORT_AFTER_S is logged anyway.
REDIS_OUTAGE_LOG_INTERVAL_S: Final = 60.0
REDIS_OUTAGE_REPORT_AFTER_S: Final = 5.0
# --workers: restarts per worker within the window; past it, a crashing worker is left dead.
WORKER_MAX_RESTARTS: Final = 5
MAX_WORKERS: Final = 64  # a typo such as --workers 400 should not start hundreds of interpreters
WORKER_START_TIMEOUT_S: Final = 30.0  # every worker must be listening within this
# Stopping waits for the workers' own close timeout plus this, then kills what is left.
WORKER_STOP_MARGIN_S: Final = 5.0
WORKER_RESTART_WINDOW_S: Final = 60.0
LEADER_TTL_S: Final = 3.0  # the tick leader's key expires this long after its last renewal
CLUSTER_BEAT_S: Final = 1.0  # leader renewal, and each node's statistics written and read
# A node's statistics dated further from now than this (either way: clocks differ a little)
# are not counted; further than CLUSTER_STATS_FORGET_S they are deleted, and each node's own
# entry expires in Redis after that long.
CLUSTER_STATS_FRESH_S: Final = 5.0
CLUSTER_STATS_FORGET_S: Final = 60.0
MAX_CLUSTER_NODES: Final = 256  # statistics of at most this many nodes read per beat
CLUSTER_MAX_NODE_ID_BYTES: Final = 128  # ours are host:pid:random, under 100 bytes
CLUSTER_MAX_STATS_ENTRY_BYTES: Final = 512  # ours are under 200 bytes of JSON
CLUSTER_MAX_FOLLOWED_BYTES: Final = 256  # a tick or stream message; ours are under 60 bytes
CLUSTER_MAX_NUMBER: Final = 2**53  # counters, ticks, values: exact as JSON numbers everywhere
CLUSTER_LOG_INTERVAL_S: Final = LOG_THROTTLE_S  # about bad data from Redis

# mDNS (--mdns, the page server): the name announced by default (NAME.local), and how many
# numbered names (NAME-2, NAME-3, ...) are tried when it is taken. Looking for an answer to a
# name takes this long; stopping waits this long at most for the goodbye to go out.
MDNS_NAME: Final = "echo-server"
MDNS_MAX_NUMBER: Final = 20
MDNS_QUERY_TIMEOUT_S: Final = 2.0
MDNS_STOP_TIMEOUT_S: Final = 3.0

# /notify: this machine's fully qualified name is looked up off the loop, at start and then
# this often (a DHCP lease may rename it).
MACHINE_NAMES_REFRESH_S: Final = 300.0
