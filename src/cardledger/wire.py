"""The gateway's wire protocol: length-prefixed msgpack frames (see
examples/gateway/README.md).

Shared by the example gateway's server and load generator and by a cluster node's
gateway (`cluster/gateway.py`). Decoding is strict: anything that is not
exactly a well-formed request raises ProtocolError, and the request never reaches the
ledger.
"""

from __future__ import annotations

import struct

import msgpack
import numpy as np

from . import schema

#: Frame header: the payload length, 4 bytes big-endian.
FRAME_HEADER = struct.Struct(">I")
#: Largest payload accepted; a longer frame closes the connection.
FRAME_BYTES_MAX = 1 << 20
#: Most ops in one request (a linked chain is one request).
REQUEST_OPS_MAX = 64
_LIMITS = {
    "u8": (0, (1 << 64) - 1),
    "i8": (-(1 << 63), (1 << 63) - 1),
    "u2": (0, (1 << 16) - 1),
    "u4": (0, (1 << 32) - 1),
}
_FIELD_LIMITS = {name: _LIMITS[schema.OP_DTYPE[name].str[1:]] for name in schema.OP_DTYPE.names}
# Fields that may be given by name: name -> value.
_ENUM_FIELDS = {field: {member.name: int(member) for member in enum}
                for field, enum in (("kind", schema.OpKind), ("account_kind", schema.AccountKind))}


class ProtocolError(ValueError):
    """A malformed frame or request; the message is sent back to the client, tagged with
    the request's id when it could be read (`req`, else None)."""

    def __init__(self, message: str, req: int | None = None) -> None:
        super().__init__(message)
        self.req = req


class SourceNotAllowedError(ProtocolError):
    """A well-formed request with an op whose source is outside the sources its
    connection may use (an authenticated gateway's client certificate mapping): the
    whole request is refused and none of its ops reaches the ledger."""


def encode_frame(obj: object) -> bytes:
    """One frame: length prefix + msgpack payload."""
    return _frame(msgpack.packb(obj, use_bin_type=True))


def _frame(payload: bytes) -> bytes:
    if len(payload) > FRAME_BYTES_MAX:
        raise ProtocolError(f"frame of {len(payload)} bytes exceeds FRAME_BYTES_MAX={FRAME_BYTES_MAX}")
    return FRAME_HEADER.pack(len(payload)) + payload


# Replies are packed by one reused packer (msgpack.packb makes a new one per call): a
# measurable share of a reply at one op a request. A Packer is not thread-safe, so the
# reply encoders below are for the server's event-loop thread only.
_REPLY_PACK = msgpack.Packer(use_bin_type=True).pack


# Per field: (position in an OP_DTYPE record, lowest, highest value).
_FIELDS = {name: (i, *_FIELD_LIMITS[name]) for i, name in enumerate(schema.OP_DTYPE.names)}
_ZERO_OP = (0,) * len(schema.OP_DTYPE.names)
_SOURCE_POS = _FIELDS["source"][0]


def _record_struct(dtype: np.dtype) -> struct.Struct:
    """A struct packing one record of `dtype` (fields in offset order, padding kept)."""
    codes = {"u8": "Q", "i8": "q", "u4": "I", "i4": "i", "u2": "H", "i2": "h", "u1": "B", "i1": "b"}
    fmt, pos = "<", 0
    for name in dtype.names:
        sub, offset = dtype.fields[name][:2]
        assert offset >= pos and sub.str[0] in "<|", "fields must be in offset order, little-endian"
        fmt += "x" * (offset - pos) + codes[sub.str[1:]]
        pos = offset + sub.itemsize
    packer = struct.Struct(fmt + "x" * (dtype.itemsize - pos))
    assert packer.size == dtype.itemsize
    return packer


# Packs a decoded op straight into the bytes of one OP_DTYPE record: cheaper than a
# numpy record per request, and the Committer takes such bytes as they are.
_OP_RECORD = _record_struct(schema.OP_DTYPE)
_RESULT_NAMES = {int(r): r.name for r in schema.Result}
assert schema.RESULT_DTYPE.names == ("code", "discounts", "amount_fen", "balance_fen", "journal_seq")


def decode_request(payload: bytes, sources: tuple[int, int] | None = None) -> tuple[int, list[bytes]]:
    """(request id, ops) from a request payload: {"req": int, "ops": [{field: value}, ...]}.

    Each op comes back as the bytes of one OP_DTYPE record (`ops_array` turns the
    list into an array). `sources`, (first, last), is the range of sources the
    connection may use: a request with any op outside it raises SourceNotAllowedError
    (None: any source)."""
    try:
        msg = msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except Exception as e:  # msgpack raises several types for garbage
        raise ProtocolError(f"not msgpack: {type(e).__name__}") from None
    if type(msg) is not dict or len(msg) != 2 or "req" not in msg or "ops" not in msg:
        raise ProtocolError('a request is a map with exactly the keys "req" and "ops"')
    req, items = msg["req"], msg["ops"]
    if type(req) is not int or not 0 <= req < 1 << 63:  # type(), not isinstance: no bools
        raise ProtocolError('"req" must be an integer in [0, 2^63)')
    try:
        return req, _decode_ops(items, sources)
    except ProtocolError as e:
        e.req = req  # a valid id: the client can tell which of its requests was refused
        raise


def _decode_ops(items: object, sources: tuple[int, int] | None) -> list[bytes]:
    if type(items) is not list or not 1 <= len(items) <= REQUEST_OPS_MAX:
        raise ProtocolError(f'"ops" must be a list of 1..{REQUEST_OPS_MAX} op maps')
    rows = []
    for i, item in enumerate(items):
        if type(item) is not dict:
            raise ProtocolError(f"op {i} is not a map")
        row = list(_ZERO_OP)
        for key, value in item.items():
            spec = _FIELDS.get(key)
            if spec is None:
                raise ProtocolError(f"op {i}: unknown field {key!r}")
            if type(value) is str and key in _ENUM_FIELDS:
                named = _ENUM_FIELDS[key].get(value)
                if named is None:
                    raise ProtocolError(f"op {i}: unknown {key} {value!r}")
                value = named
            if type(value) is not int:
                raise ProtocolError(f"op {i}: field {key!r} must be an integer")
            pos, lo, hi = spec
            if not lo <= value <= hi:
                raise ProtocolError(f"op {i}: field {key!r} = {value} is out of range")
            row[pos] = value
        if sources is not None and not sources[0] <= row[_SOURCE_POS] <= sources[1]:
            raise SourceNotAllowedError(f"op {i}: source {row[_SOURCE_POS]} is outside this connection's sources "
                                        f"{sources[0]}..{sources[1]}")
        rows.append(_OP_RECORD.pack(*row))
    return rows


def ops_array(rows: list[bytes]) -> np.ndarray:
    """The ops of a decoded request as an OP_DTYPE array."""
    return np.frombuffer(b"".join(rows), dtype=schema.OP_DTYPE).copy()


def encode_results(req: int, results: np.ndarray) -> bytes:
    """The response frame for a request's results (one RESULT_DTYPE record or an array).
    In the server's loop thread only (see _REPLY_PACK)."""
    rows = []
    for code, discounts, amount_fen, balance_fen, journal_seq in (
        [results.item()] if results.ndim == 0 else results.tolist()
    ):
        rows.append({"code": code, "result": _RESULT_NAMES.get(code, str(code)), "amount_fen": amount_fen,
                     "balance_fen": balance_fen, "journal_seq": journal_seq, "discounts": discounts})
    return _frame(_REPLY_PACK({"req": req, "results": rows}))


def encode_error(req: int | None, message: str) -> bytes:
    """The response frame for a refused request (in the server's loop thread only)."""
    return _frame(_REPLY_PACK({"req": req, "error": message}))
