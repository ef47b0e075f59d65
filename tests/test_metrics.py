"""`GET /health` and `GET /metrics` on the WebSocket port, read as a supervisor would.

In-process (tests/inprocess.py): the app's server, raw clients, the loop driven turn by turn.
/metrics is parsed with prometheus_client's own parser of the text format, so what is checked
is what a Prometheus scrape reads. With --redis, see tests/test_cluster.py.
"""

from __future__ import annotations

import json
import socket
import time

import pytest
from inprocess import Harness, client_frame, next_frames, raw_exchange, turns
from prometheus_client.parser import text_string_to_metric_families
from support import upgrade_request

from echo_server import defaults
from echo_server.core.server import Server
from echo_server.protocol.frames import CloseCode, Opcode, encode_close, encode_frame

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def get(server: Server, target: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    request = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n"
    answer = raw_exchange(server, request.encode())
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value for name, _, value in (line.partition(": ") for line in lines)}
    return int(status_line.split()[1]), headers, body


def scrape(server: Server) -> Samples:
    """Every sample of /metrics, by name and labels."""
    status, headers, body = get(server, "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=")
    samples: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


# /health


def test_health_is_200_ok_while_serving(inproc: Harness) -> None:
    server = inproc.app_server()
    status, headers, body = get(server, "/health")
    assert status == 200
    assert json.loads(body) == {"status": "ok"}
    assert headers["cache-control"] == "no-store"


def test_health_is_503_stopping_while_the_server_stops(inproc: Harness) -> None:
    server = inproc.app_server()
    inproc.connect(server)  # it never answers the close frame: the stop lasts
    server.shutdown()
    status, _, body = get(server, "/health")
    assert status == 503
    assert json.loads(body) == {"status": "stopping"}


@pytest.mark.parametrize("target", ["/health", "/metrics"])
def test_health_and_metrics_take_only_get(inproc: Harness, target: str) -> None:
    server = inproc.app_server()
    status, headers, _ = get(server, target, "POST")
    assert status == 405
    assert headers["allow"] == "GET"


# /metrics


def test_metrics_count_the_connections_of_each_route(inproc: Harness) -> None:
    server = inproc.app_server()
    for path in ("/chat", "/chat", "/tick"):
        inproc.connect(server, path)
    samples = scrape(server)
    assert value(samples, "echo_server_connections", route="/chat") == 2
    assert value(samples, "echo_server_connections", route="/tick") == 1
    assert value(samples, "echo_server_connections", route="/echo") == 0
    assert value(samples, "echo_server_connections_accepted_total") >= 3


def test_metrics_count_messages_and_bytes_in_and_out(inproc: Harness) -> None:
    server = inproc.app_server()
    client = inproc.connect(server, "/echo")
    before = scrape(server)
    client.send(client_frame(Opcode.TEXT, b"hello"))
    next_frames(server, client, "the echo")
    after = scrape(server)
    for direction in ("in", "out"):
        grew = value(after, "echo_server_messages_total", direction=direction) - value(
            before, "echo_server_messages_total", direction=direction
        )
        assert grew == 1
        assert value(after, "echo_server_bytes_total", direction=direction) > value(
            before, "echo_server_bytes_total", direction=direction
        )


def test_metrics_count_refused_handshakes_by_status(inproc: Harness) -> None:
    server = inproc.app_server()
    raw_exchange(server, upgrade_request(server.port, "/nowhere"))
    raw_exchange(server, upgrade_request(server.port, "/nowhere"))
    raw_exchange(server, upgrade_request(server.port, "/", "Origin: http://evil.example\r\n"))
    samples = scrape(server)
    assert value(samples, "echo_server_handshakes_refused_total", status="404") == 2
    assert value(samples, "echo_server_handshakes_refused_total", status="403") == 1


def test_metrics_count_plain_requests_by_status(inproc: Harness) -> None:
    server = inproc.app_server()
    get(server, "/health")
    get(server, "/publish/t?value=x")
    samples = scrape(server)  # counted once answered: this scrape is not in itself
    assert value(samples, "echo_server_http_requests_total", status="200") == 1
    assert value(samples, "echo_server_http_requests_total", status="400") == 1


def test_metrics_count_closes_by_code(inproc: Harness) -> None:
    server = inproc.app_server()
    normal, violating, vanishing = (inproc.connect(server, "/echo") for _ in range(3))
    normal.send(client_frame(Opcode.CLOSE, encode_close(CloseCode.NORMAL_CLOSURE)[2:]))
    violating.send(encode_frame(Opcode.TEXT, b"unmasked"))  # a protocol error: 1002
    vanishing.sock.setsockopt(
        socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
    )
    vanishing.close()  # a reset, no close frame: 1006
    for client in (normal, violating):
        next_frames(server, client, "the close frame")
        client.sock.shutdown(socket.SHUT_WR)
    turns(server, lambda: not server.connections, what="every connection closed")
    samples = scrape(server)
    assert value(samples, "echo_server_closes_total", code="1000") == 1
    assert value(samples, "echo_server_closes_total", code="1002") == 1
    assert value(samples, "echo_server_closes_total", code="1006") == 1


def test_metrics_show_the_series_and_the_points_kept(inproc: Harness) -> None:
    server = inproc.app_server()
    get(server, "/publish/t?value=1")
    samples = scrape(server)
    assert value(samples, "echo_server_series") == 2  # the demo and t
    assert value(samples, "echo_server_points_total") >= 2


def test_loop_lag_is_a_histogram_that_sees_a_stalled_loop(inproc: Harness) -> None:
    server = inproc.app_server()
    stall_s = 0.3
    # A callback that holds the loop, as a slow handler would: the probe's timer runs late.
    server.loop.call_later(defaults.LOOP_LAG_PROBE_S * 0.9, lambda: time.sleep(stall_s))
    lag = "echo_server_loop_lag_seconds"

    def probed_twice() -> bool:
        return value(scrape(server), lag + "_count") >= 2

    turns(server, probed_twice, what="two lag probes")
    samples = scrape(server)
    assert value(samples, lag + "_bucket", le="0.1") < value(samples, lag + "_bucket", le="+Inf")
    assert value(samples, lag + "_sum") >= stall_s * 0.5


def test_metrics_say_nothing_of_redis_without_it(inproc: Harness) -> None:
    server = inproc.app_server()
    assert not any(name.startswith("echo_server_redis") for name, _ in scrape(server))


def test_metrics_include_the_process_numbers(inproc: Harness) -> None:
    server = inproc.app_server()
    samples = scrape(server)
    assert value(samples, "process_open_fds") > 0
    assert value(samples, "process_resident_memory_bytes") > 0
