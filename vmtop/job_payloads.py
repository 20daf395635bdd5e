"""What a profiling job ships from the target to the client, and how it is read back.

A job's result is a small ``meta`` dict plus a payload: a JSON object with big integer columns
as raw arrays, compressed with zlib and sent in base64 chunks (``job_result`` with ``chunk=i``) so a large allocation snapshot stays
under the protocol's reply limit. Everything here is plain data: the client never unpickles or
unmarshals what a target sends (a target is not trusted to send code), so pstats dicts and
tracemalloc traces travel as tables of strings and machine integers.

Encoders run in the target (on an agent thread, in slices so the program keeps the GIL most of
the time); decoders run in the client and raise ``ValueError`` on malformed data.
"""

from __future__ import annotations

import json
import sys
import zlib
from array import array
from collections.abc import Iterator, Sequence
from typing import Any

from profilers.callgraph import PstatsDict, PstatsKey

CHUNK_BYTES = 8 * 1024 * 1024  # compressed bytes per job_result reply (base64: ~11 MB)
MAX_PAYLOAD_BYTES = 2 * 1024 * 1024 * 1024  # decompressed bytes a client accepts
SLICE = 50_000  # rows encoded per slice (each slice holds the GIL for a few ms)


# -- framing ---------------------------------------------------------------------------------------
# A payload is zlib( 8-byte little-endian header length | header JSON | array bytes... ): the
# header holds the JSON object, in which each ``array.array`` (only as a dict value, at any
# depth of dicts) is replaced by ``{"$array": i}``; ``arrays`` lists their type and length.
ARRAY_TYPES = ("q", "d")


def pack(obj: dict[str, Any]) -> bytes:
    """The payload bytes of ``obj`` (JSON values and ``array.array`` columns).

    Big columns travel as raw machine integers: building them allocates nothing per row
    (which matters when the target traces its allocations), and zlib compresses them without
    holding the GIL.
    """
    arrays: list[array] = []
    header_obj = {"byteorder": sys.byteorder, "obj": _swap_out(obj, arrays)}
    header_obj["arrays"] = [[a.typecode, len(a)] for a in arrays]
    header = "".join(json_parts(header_obj)).encode()
    comp = zlib.compressobj(1)
    out = [comp.compress(len(header).to_bytes(8, "little")), comp.compress(header)]
    out.extend(comp.compress(memoryview(a).cast("B")) for a in arrays)
    out.append(comp.flush())
    return b"".join(out)


def _swap_out(value: Any, arrays: list[array]) -> Any:
    if isinstance(value, array):
        if value.typecode not in ARRAY_TYPES:
            raise TypeError(f"array type {value.typecode!r} cannot be shipped")
        arrays.append(value)
        return {"$array": len(arrays) - 1}
    if isinstance(value, dict):
        return {key: _swap_out(v, arrays) for key, v in value.items()}
    return value


def json_parts(obj: dict[str, Any]) -> Iterator[str]:
    """JSON text of ``obj`` in pieces: a top-level list value is encoded in slices, so no one
    ``json.dumps`` call holds the GIL for long."""
    yield "{"
    for n, (key, value) in enumerate(obj.items()):
        yield ("," if n else "") + json.dumps(key) + ":"
        if isinstance(value, list) and len(value) > SLICE:
            yield "["
            for start in range(0, len(value), SLICE):
                text = json.dumps(value[start : start + SLICE], separators=(",", ":"))
                yield ("," if start else "") + text[1:-1]
            yield "]"
        else:
            yield json.dumps(value, separators=(",", ":"))
    yield "}"


def unpack(data: bytes, limit: int = MAX_PAYLOAD_BYTES) -> dict[str, Any]:
    """Inverse of :func:`pack`; refuses payloads that inflate beyond ``limit`` bytes."""
    try:
        inflate = zlib.decompressobj()
        raw = inflate.decompress(data, limit)
        if inflate.unconsumed_tail:
            raise ValueError(f"payload larger than {limit:,} bytes")
        size = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8 : 8 + size])
        if not isinstance(header, dict) or not isinstance(header.get("obj"), dict):
            raise ValueError("no JSON object in the header")
        arrays = []
        offset = 8 + size
        for typecode, count in header.get("arrays", []):
            if typecode not in ARRAY_TYPES or not isinstance(count, int) or count < 0:
                raise ValueError(f"bad array {typecode!r} x {count!r}")
            column = array(typecode)
            end = offset + count * column.itemsize
            if end > len(raw):
                raise ValueError("array data cut short")
            column.frombytes(raw[offset:end])
            if header.get("byteorder") != sys.byteorder:
                column.byteswap()
            arrays.append(column)
            offset = end
        obj = _swap_in(header["obj"], arrays)
    except (zlib.error, UnicodeDecodeError, json.JSONDecodeError, TypeError, IndexError) as exc:
        raise ValueError(f"corrupt payload: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"corrupt payload: {exc}") from None
    return dict(obj)


def _swap_in(value: Any, arrays: list[array]) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$array"}:
            index = value["$array"]
            if not isinstance(index, int) or not 0 <= index < len(arrays):
                raise ValueError(f"bad array reference {index!r}")
            return arrays[index]
        return {key: _swap_in(v, arrays) for key, v in value.items()}
    return value


def chunks(payload: bytes, size: int | None = None) -> int:
    """How many ``job_result`` replies carry ``payload`` (``size`` bytes each)."""
    size = CHUNK_BYTES if size is None else size
    return max(1, -(-len(payload) // size))


# -- pstats (calls profiles) -----------------------------------------------------------------------
def encode_pstats(stats: PstatsDict) -> dict[str, Any]:
    """A pstats dict as ``{"functions": [[file, line, name, cc, nc, tt, ct]], "edges":
    [[callee, caller, nc, cc, tt, ct]]}`` (indices into functions)."""
    index = {key: i for i, key in enumerate(stats)}
    functions = []
    edges = []
    for key, (cc, nc, tt, ct, callers) in stats.items():
        functions.append([key[0], key[1], key[2], cc, nc, tt, ct])
        for caller, values in callers.items():
            j = index.get(caller)
            if j is not None:
                edges.append([index[key], j, *values[:4]])
    return {"functions": functions, "edges": edges}


def decode_pstats(data: dict[str, Any]) -> PstatsDict:
    try:
        keys: list[PstatsKey] = []
        stats: PstatsDict = {}
        for file, line, name, cc, nc, tt, ct in data["functions"]:
            key = (str(file), int(line), str(name))
            keys.append(key)
            stats[key] = (int(cc), int(nc), float(tt), float(ct), {})
        for callee, caller, nc, cc, tt, ct in data["edges"]:
            stats[keys[int(callee)]][4][keys[int(caller)]] = (
                int(nc),
                int(cc),
                float(tt),
                float(ct),
            )
        return stats
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"not a calls profile: {exc}") from None


# -- tracemalloc snapshots (allocation reports) ----------------------------------------------------
class _Ids(dict[Any, int]):
    """value -> dense index, assigned on first lookup; ``order`` lists the values."""

    def __init__(self) -> None:
        super().__init__()
        self.order: list[Any] = []

    def __missing__(self, key: Any) -> int:
        index = self[key] = len(self.order)
        self.order.append(key)
        return index


def encode_traces(raw_traces: Sequence[Any], traceback_limit: int) -> dict[str, Any]:
    """Raw tracemalloc traces ``(domain, size, frames, total_nframe)`` (``frames`` most recent
    first, ``(filename, lineno)`` each) as columns: ``domain``, ``size``, ``traceback``,
    ``nframe`` (one row per trace), the distinct tracebacks as frame ids (``tb_frames`` cut at
    ``tb_offsets``), the frames as ``[file, line]`` pairs and the file names.

    The per-trace work is four list comprehensions in C-speed loops that allocate no object
    per trace (the target may be tracing its allocations while we encode).
    """
    tb_ids = _Ids()
    tb_column = [tb_ids[trace[2]] for trace in raw_traces]
    columns = {
        "domain": array("q", [trace[0] for trace in raw_traces]),
        "size": array("q", [trace[1] for trace in raw_traces]),
        "traceback": array("q", tb_column),
        "nframe": array("q", [trace[3] if len(trace) > 3 else 0 for trace in raw_traces]),
    }
    del tb_column
    frame_ids = _Ids()
    offsets = array("q", [0])
    tb_frames = array("q")
    for tb in tb_ids.order:
        tb_frames.extend([frame_ids[frame] for frame in tb])
        offsets.append(len(tb_frames))
    file_ids = _Ids()
    frames = array("q")
    for filename, lineno in frame_ids.order:
        frames.append(file_ids[filename])
        frames.append(lineno)
    return {
        "limit": traceback_limit,
        "count": len(raw_traces),
        "files": list(file_ids.order),
        "frames": frames,
        "tb_offsets": offsets,
        "tb_frames": tb_frames,
        **columns,
    }


def decode_traces(data: dict[str, Any]) -> tuple[list[tuple[Any, ...]], int]:
    """``(raw traces, traceback limit)`` for ``tracemalloc.Snapshot(traces, limit)``."""
    try:
        files = [str(f) for f in data["files"]]
        flat = data["frames"]
        frames = [(files[flat[i]], int(flat[i + 1])) for i in range(0, len(flat), 2)]
        offsets, tb_frames = data["tb_offsets"], data["tb_frames"]
        tracebacks = [
            tuple(frames[j] for j in tb_frames[offsets[i] : offsets[i + 1]])
            for i in range(len(offsets) - 1)
        ]
        columns = [data[name] for name in ("domain", "size", "traceback", "nframe")]
        count = int(data["count"])
        if any(not isinstance(c, array) or len(c) != count for c in columns):
            raise ValueError("trace columns of unequal length")
        ids = columns[2]
        if count and (min(ids) < 0 or max(ids) >= len(tracebacks)):
            raise ValueError("traceback index out of range")
        if tb_frames and (min(tb_frames) < 0 or max(tb_frames) >= len(frames)):
            raise ValueError("frame index out of range")
        traces = list(
            zip(columns[0], columns[1], map(tracebacks.__getitem__, ids), columns[3], strict=True)
        )
        return traces, int(data["limit"])
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"not a tracemalloc snapshot: {exc}") from None
