"""The gateway's wire protocol: length-prefixed msgpack frames (see README.md here).

Shared by the server and the load generator. Decoding is strict: anything that is not
exactly a well-formed request raises ProtocolError, and the request never reaches the
ledger.
"""

from __future__ import annotations

import struct

import msgpack
import numpy as np

import cardledger

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
_FIELD_LIMITS = {name: _LIMITS[cardledger.OP_DTYPE[name].str[1:]] for name in cardledger.OP_DTYPE.names}
_ENUM_FIELDS = {"kind": cardledger.OpKind, "account_kind": cardledger.AccountKind}


class ProtocolError(ValueError):
    """A malformed frame or request; the message is sent back to the client."""


def encode_frame(obj: object) -> bytes:
    """One frame: length prefix + msgpack payload."""
    payload = msgpack.packb(obj, use_bin_type=True)
    if len(payload) > FRAME_BYTES_MAX:
        raise ProtocolError(f"frame of {len(payload)} bytes exceeds FRAME_BYTES_MAX={FRAME_BYTES_MAX}")
    return FRAME_HEADER.pack(len(payload)) + payload


def decode_request(payload: bytes) -> tuple[int, np.ndarray]:
    """(request id, ops) from a request payload: {"req": int, "ops": [{field: value}, ...]}."""
    try:
        msg = msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except Exception as e:  # msgpack raises several types for garbage
        raise ProtocolError(f"not msgpack: {type(e).__name__}") from None
    if not isinstance(msg, dict) or set(msg) != {"req", "ops"}:
        raise ProtocolError('a request is a map with exactly the keys "req" and "ops"')
    req, items = msg["req"], msg["ops"]
    if not isinstance(req, int) or isinstance(req, bool) or not 0 <= req < 1 << 63:
        raise ProtocolError('"req" must be an integer in [0, 2^63)')
    if not isinstance(items, list) or not 1 <= len(items) <= REQUEST_OPS_MAX:
        raise ProtocolError(f'"ops" must be a list of 1..{REQUEST_OPS_MAX} op maps')
    ops = cardledger.new_ops(len(items))
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ProtocolError(f"op {i} is not a map")
        for key, value in item.items():
            if key not in _FIELD_LIMITS:
                raise ProtocolError(f"op {i}: unknown field {key!r}")
            if isinstance(value, str) and key in _ENUM_FIELDS:
                try:
                    value = int(_ENUM_FIELDS[key][value])
                except KeyError:
                    raise ProtocolError(f"op {i}: unknown {key} {value!r}") from None
            if not isinstance(value, int) or isinstance(value, bool):
                raise ProtocolError(f"op {i}: field {key!r} must be an integer")
            lo, hi = _FIELD_LIMITS[key]
            if not lo <= value <= hi:
                raise ProtocolError(f"op {i}: field {key!r} = {value} is out of range")
            ops[i][key] = value
    return req, ops


def encode_results(req: int, results: np.ndarray) -> bytes:
    """The response frame for a request's results."""
    rows = [
        {"code": int(r["code"]), "result": cardledger.Result(int(r["code"])).name,
         "amount_fen": int(r["amount_fen"]), "balance_fen": int(r["balance_fen"]),
         "journal_seq": int(r["journal_seq"])}
        for r in np.atleast_1d(results)
    ]
    return encode_frame({"req": req, "results": rows})


def encode_error(req: int | None, message: str) -> bytes:
    """The response frame for a refused request."""
    return encode_frame({"req": req, "error": message})
