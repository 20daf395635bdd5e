"""The agent's decoder and a live agent socket fed random and malformed input.

Every request line gets an error reply (or, for a line over the limit, the connection is
closed); the target keeps running, its own output is unchanged and its memory stays bounded.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fault_helpers import (
    FaultTarget,
    LineReader,
    digest,
    hello,
    raw_connect,
    stderr_after_exit,
)
from vmtop import protocol
from vmtop.agent.collector import Collector
from vmtop.agent.server import Server

pytestmark = pytest.mark.internals

CHECK_N = 2000
RSS_BOUND = 20 * 1024 * 1024  # growth allowed over the whole module (it is ~3 MB)

# -- strategies ---------------------------------------------------------------------------------
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**4000), max_value=10**4000)
    | st.floats()  # nan and infinities become NaN / Infinity tokens
    | st.text(max_size=40),  # lone surrogates included: they are escaped on the wire
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
# Ops the live fuzz may send with random arguments: everything but the ones that act on the
# target (cancel, starting a job), which get their own wrong-type tests below.
SAFE_OPS = [op for op in protocol.OPS if op not in ("cancel", "job_start")]
ops = st.sampled_from(SAFE_OPS) | st.text(max_size=20) | json_values
requests = st.fixed_dictionaries(
    {},
    optional={
        "id": st.integers() | st.text(max_size=10) | json_values,
        "op": ops,
        "args": st.dictionaries(st.text(max_size=10), json_values, max_size=5) | json_values,
        "protocol": json_values,
    },
)


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, allow_nan=True).encode()


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    """One fragment of input: JSON that may be valid, cut short, corrupted, or plain noise."""
    kind = draw(st.sampled_from(["request", "truncated", "corrupt", "noise", "nested", "value"]))
    if kind == "noise":
        return draw(st.binary(max_size=200))
    if kind == "nested":
        depth = draw(st.integers(1, 40_000))
        opener = draw(st.sampled_from([b"[", b'{"a":', b'{"id":1,"op":"hello","args":']))
        return opener * depth
    if kind == "value":
        return dumps(draw(json_values))
    data = dumps(draw(requests))
    if kind == "truncated":
        return data[: draw(st.integers(0, max(0, len(data) - 1)))]
    if kind == "corrupt":
        at = draw(st.integers(0, len(data)))
        junk = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x00", b"\xf8\x88"]))
        return data[:at] + junk + data[at:]
    return data


payloads = st.lists(
    st.tuples(frames(), st.sampled_from([b"\n", b"", b"\r\n", b" \n"])), min_size=1, max_size=8
).map(lambda parts: b"".join(f + sep for f, sep in parts) + b"\n")


# -- the decoder, in process ------------------------------------------------------------------
def check_parse(line: bytes) -> None:
    try:
        req_id, op, args = protocol.parse_request(line)
    except protocol.ProtocolError as exc:
        assert exc.code in protocol.ERROR_CODES
        assert str(exc)
        return
    assert op in protocol.OPS
    assert isinstance(args, dict)
    assert req_id is None or isinstance(req_id, int | str)


@given(st.binary(max_size=300))
def test_decoder_noise(line: bytes) -> None:
    check_parse(line)


@settings(max_examples=200, deadline=None)
@given(frames())
def test_decoder_frames(line: bytes) -> None:
    check_parse(line)


def test_decoder_deep_nesting_is_a_bad_request() -> None:
    for opener in (b"[", b'{"a":'):
        with pytest.raises(protocol.ProtocolError, match="nested too deeply") as info:
            protocol.parse_request(opener * 30_000)
        assert info.value.code == "bad_request"


@settings(max_examples=100, deadline=None)
@given(payloads)
def test_server_handle_answers_every_line_without_raising(payload: bytes) -> None:
    """``Server._handle`` (no hello yet: nothing is attached) answers each line with a reply
    that encodes to one JSON line."""
    server = Server(Collector())
    for line in payload.split(b"\n"):
        if not line.strip() or len(line) > protocol.MAX_REQUEST_BYTES:
            continue
        reply, close = server._handle(line, False, None, "fuzz")
        assert reply["ok"] in (True, False)
        if not reply["ok"]:
            assert reply["error"]["code"] in protocol.ERROR_CODES
        encoded = protocol.encode(reply)
        assert encoded.count(b"\n") == 1 and json.loads(encoded) is not None
        assert server.collector.clients == 0


# -- a live agent -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def target() -> Iterator[FaultTarget]:
    with FaultTarget("--tasks", "50") as t:
        assert t.check(CHECK_N) == digest(CHECK_N)
        hello(raw_connect(t.socket)).sock.close()  # warm up: first attach imports psutil
        before = t.quiet_state()
        yield t
        # The target's own work and output are unchanged by all of the above ...
        assert t.check(CHECK_N) == digest(CHECK_N)
        after = t.settled_state(before)
        assert after["threads"] == before["threads"]
        assert after["handle_run_original"] and after["get_nowait_original"]
        assert after["rss"] - before["rss"] < RSS_BOUND
        # ... and so is its stderr: the agent's start line, nothing else.
        assert stderr_after_exit(t).splitlines() == [
            f"vmtop: agent listening for pid {t.pid} on {t.socket}"
        ]
        assert t.proc.returncode == 0


def converse(target: FaultTarget, payload: bytes, greet: bool) -> list[dict[str, Any]]:
    """Send ``payload`` then a marker request; read replies until the marker's answer (or
    until the agent closes this connection). Every reply must be one JSON object."""
    sock = raw_connect(target.socket)
    try:
        reader = hello(sock) if greet else LineReader(sock)
        marker = protocol.encode({"id": "end-of-fuzz", "op": "hello", "args": {"protocol": 1}})
        try:
            sock.sendall(payload + marker)
        except (BrokenPipeError, ConnectionResetError):
            pass  # it closed on an over-long line: its replies are still readable
        replies = []
        while (reply := reader.line()) is not None:
            replies.append(reply)
            if reply.get("id") == "end-of-fuzz":
                break
        return replies
    finally:
        sock.close()


def longest_line(payload: bytes) -> int:
    return max(len(line) for line in payload.split(b"\n"))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=payloads, greet=st.booleans())
def test_live_agent_answers_fuzz_with_errors(
    target: FaultTarget, payload: bytes, greet: bool
) -> None:
    replies = converse(target, payload, greet)
    for reply in replies:
        assert isinstance(reply.get("ok"), bool), reply
        if not reply["ok"]:
            assert reply["error"]["code"] in protocol.ERROR_CODES, reply
    closed = not replies or replies[-1].get("id") != "end-of-fuzz"
    if closed:
        # Only an over-long line, a hello of another protocol version or a bye ends a
        # conversation early, and the agent says which.
        last = replies[-1] if replies else {}
        if last.get("ok"):
            assert last["result"] == {} and b'"bye"' in payload  # the bye's reply
        elif last.get("error", {}).get("message") == "request line too long":
            assert longest_line(payload) > protocol.MAX_REQUEST_BYTES
        else:
            assert last.get("error", {}).get("code") == "version", replies
    else:
        lines = [x for x in payload.split(b"\n")[:-1] if x.strip()]
        if b'"bye"' not in payload:
            assert len(replies) == len(lines) + 1  # one reply per request line, plus the marker


def test_line_over_64_kib_closes_only_that_connection(target: FaultTarget) -> None:
    bystander = raw_connect(target.socket)
    bystander_reader = hello(bystander)
    for payload in (
        b"x" * (protocol.MAX_REQUEST_BYTES + 10),  # no newline: the agent stops reading it
        b'{"op":"' + b"a" * protocol.MAX_REQUEST_BYTES + b'"}\n',  # a whole line, too long
    ):
        sock = raw_connect(target.socket)
        reader = hello(sock)
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            for _ in range(64):  # keep writing until the agent's close is seen
                sock.sendall(payload)
        reply = reader.line()
        assert reply is not None and reply["error"]["message"] == "request line too long"
        assert reader.line() is None
        sock.close()
    # A line just under the limit is an ordinary request.
    sock = raw_connect(target.socket)
    reader = hello(sock)
    pad = protocol.MAX_REQUEST_BYTES - 40
    sock.sendall(b'{"id":7,"op":"bye","pad":"' + b" " * pad + b'"}\n')
    assert reader.line() == {"id": 7, "ok": True, "result": {}}
    sock.close()
    # The other client never noticed.
    bystander.sendall(protocol.encode({"id": 3, "op": "snapshot", "args": {"limit": 1}}))
    reply = bystander_reader.line()
    assert reply is not None and reply["ok"] and reply["id"] == 3
    bystander.close()


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"[" * 60_000, "bad_request"),
        (b'{"id":1,"op":"hello","args":' + b"[" * 30_000, "bad_request"),
        (b'{"id":' + b"9" * 5000 + b',"op":"bye"}', "bad_request"),  # int over 4300 digits
        (b'{"id":1e999,"op":"bye"}', "bad_request"),
        (b'{"id":[1],"op":"bye"}', "bad_request"),
        (b'{"id":1,"op":17}', "bad_request"),
        (b'{"id":1,"op":"snapshot","args":[]}', "bad_request"),
        (b'{"id":1,"op":"snapshot","args":{"limit":1e400}}', "bad_request"),
        (b'{"id":1,"op":"snapshot","args":{"limit":' + b"9" * 4000 + b"}}", "bad_request"),
        (b'{"id":1,"op":"snapshot","args":{"kinds":[{"a":1}],"sort":["x"]}}', "bad_request"),
        (b'{"id":1,"op":"detail","args":{"key":' + b"[" * 20 + b"]" * 20 + b"}}", "bad_request"),
        (b'{"id":1,"op":"cancel","args":{"key":{"task":1}}}', "bad_request"),
        (b'{"id":1,"op":"cancel","args":{"key":"task:999999"}}', "not_found"),
        (b'{"id":1,"op":"job_start","args":{"kind":["sample"],"duration":"x"}}', None),
        (b'{"id":1,"op":"job_status","args":{"id":"nope"}}', None),
        (b'{"id":1,"op":"\xff\xfe"}', "bad_request"),
        (b'{"id":1,"op":"\\ud800"}', "unknown_op"),
        (b'\xef\xbb\xbf{"id":1,"op":"bye"}', "bad_request"),
        (b'"just a string"', "bad_request"),
    ],
    ids=lambda v: v[:30].decode("latin-1") if isinstance(v, bytes) else str(v),
)
def test_malformed_request_gets_an_error(
    target: FaultTarget, line: bytes, code: str | None
) -> None:
    replies = converse(target, line + b"\n", greet=True)
    assert len(replies) == 2 and replies[-1]["id"] == "end-of-fuzz"
    reply = replies[0]
    assert reply["ok"] is False, reply
    assert (
        reply["error"]["code"] == code if code else reply["error"]["code"] in protocol.ERROR_CODES
    )


def pipelined(target: FaultTarget, n: int) -> tuple[int, float]:
    """Send ``n`` tiny bad requests on one connection while a thread reads the replies."""
    sock = raw_connect(target.socket, timeout=60)
    got = [0, 0]  # replies, error replies

    def read() -> None:
        tail = b""
        while got[0] < n:
            chunk = sock.recv(1 << 20)
            if not chunk:
                return
            data = tail + chunk
            lines = data.split(b"\n")
            tail = lines.pop()
            got[0] += len(lines)
            got[1] += sum(1 for x in lines if x.startswith(b'{"id":null,"ok":false'))

    reader = threading.Thread(target=read)
    reader.start()
    t0 = time.perf_counter()
    block = b"{}\n" * 10_000
    for _ in range(n // 10_000):
        sock.sendall(block)
    reader.join(120)
    elapsed = time.perf_counter() - t0
    sock.close()
    assert got == [n, n]
    return n, elapsed


def test_hundred_thousand_tiny_requests(target: FaultTarget) -> None:
    # Not a million: that takes 14-36 s on a 2-core VM (about 13 us per request in the
    # agent, JSON both ways); 100k (1.5-3 s) shows the same: linear, bounded, all answered.
    rss0 = target.state()["rss"]
    pipelined(target, 100_000)
    assert target.state()["rss"] - rss0 < RSS_BOUND
    assert target.check(CHECK_N) == digest(CHECK_N)


def test_half_closed_and_reset_connections(target: FaultTarget) -> None:
    for how in ("shut_wr", "reset", "mid_line"):
        sock = raw_connect(target.socket)
        reader = hello(sock)
        if how == "mid_line":
            sock.sendall(b'{"id":1,"op":"snap')
            sock.close()
            continue
        sock.sendall(protocol.encode({"id": 1, "op": "snapshot", "args": {"limit": 5}}))
        if how == "shut_wr":
            sock.shutdown(socket.SHUT_WR)  # the request is still answered, then EOF
            reply = reader.line()
            assert reply is not None and reply["id"] == 1 and reply["ok"]
            assert reader.line() is None
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    with raw_connect(target.socket) as sock:
        reader = hello(sock)
        sock.sendall(protocol.encode({"id": 2, "op": "snapshot", "args": {"limit": 5}}))
        reply = reader.line()
        assert reply is not None and reply["ok"]
