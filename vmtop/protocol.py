"""The wire protocol between a client and an agent: JSON lines over a Unix stream socket.

Every message is one UTF-8 JSON object on one line (``socat - UNIX-CONNECT:<pid>.sock`` can
speak it). The client opens with ``hello``; the agent answers with its protocol version and
refuses other requests until a compatible hello arrived.

Request:  ``{"id": 1, "op": "snapshot", "args": {...}}``
Response: ``{"id": 1, "ok": true, "result": {...}}`` or
          ``{"id": 1, "ok": false, "error": {"code": "bad_request", "message": "..."}}``

Ops: ``hello``, ``snapshot``, ``detail``, ``cancel`` (the only op that changes the target),
``bye``; profiling jobs ``job_start``, ``job_status``, ``job_cancel``, ``job_result``
(:mod:`vmtop.agent.jobs`: they measure for N seconds and restore the target's state). No op
evaluates code sent by the client.
"""

from __future__ import annotations

import json
from typing import Any

PROTOCOL_VERSION = 1
MAX_REQUEST_BYTES = 64 * 1024  # a request line longer than this closes the connection
MAX_RESPONSE_BYTES = 64 * 1024 * 1024

OPS = (
    "hello",
    "snapshot",
    "detail",
    "cancel",
    "bye",
    "job_start",
    "job_status",
    "job_cancel",
    "job_result",
)
ERROR_CODES = (
    "bad_request",  # not JSON, not an object, wrong field types
    "unknown_op",
    "version",  # incompatible protocol version
    "not_found",  # the process asked for no longer exists
    "timeout",  # the loop did not answer in time (details in the message)
    "internal",  # the agent hit an error; the target is unaffected
    "busy",  # a job of that kind already runs, or the job has no result yet
    "refused",  # the target's state forbids the job (a profiler already runs, no loop, ...)
)


class ProtocolError(Exception):
    """A message that breaks the protocol; ``code`` is one of :data:`ERROR_CODES`."""

    def __init__(self, code: str, message: str, req_id: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.req_id = req_id  # the request's id when it could be read: the reply carries it


# Built once: json.dumps/loads with options build a new encoder per call (a quarter of the
# cost of answering a small request).
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)
_DECODER = json.JSONDecoder()


def encode(message: dict[str, Any]) -> bytes:
    return _ENCODER.encode(message).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """Decode one request line; raise :class:`ProtocolError` for anything malformed."""
    try:
        message = _DECODER.decode(line.decode())  # UTF-8 only, as the protocol says
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError("bad_request", "not a JSON object") from None
    except RecursionError:  # e.g. 30 000 nested brackets: within the line limit
        raise ProtocolError("bad_request", "JSON nested too deeply") from None
    if not isinstance(message, dict):
        raise ProtocolError("bad_request", "a message must be a JSON object")
    return message


def parse_request(line: bytes) -> tuple[Any, str, dict[str, Any]]:
    """``(id, op, args)`` of a request line, validated for shape."""
    message = decode(line)
    req_id = message.get("id")
    if req_id is not None and not isinstance(req_id, int | str):
        raise ProtocolError("bad_request", "'id' must be an integer or a string")
    op = message.get("op")
    if not isinstance(op, str):
        raise ProtocolError("bad_request", "'op' must be a string", req_id)
    if op not in OPS:
        raise ProtocolError("unknown_op", f"unknown op {op[:40]!r}", req_id)
    args = message.get("args", {})
    if not isinstance(args, dict):
        raise ProtocolError("bad_request", "'args' must be an object", req_id)
    return req_id, op, args


def ok(req_id: Any, result: Any) -> dict[str, Any]:
    return {"id": req_id, "ok": True, "result": result}


def error(req_id: Any, code: str, message: str) -> dict[str, Any]:
    return {"id": req_id, "ok": False, "error": {"code": code, "message": message}}
