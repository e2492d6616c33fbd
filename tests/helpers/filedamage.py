"""Random damage to a text file's bytes, for the fuzz tests of the files a ledger reads
(fares.toml, offer catalogs): bits flipped, the file cut, lines dropped or duplicated,
two values swapped, a value replaced, garbage, TOML tokens or bytes that are not UTF-8
inserted. `damage(data, rnd)` returns the damaged bytes and says what it did."""

from __future__ import annotations

import random
import re

#: The ways `damage` can hurt a file.
KINDS = ("flip", "cut", "drop_line", "dup_line", "swap_values", "replace_value", "garbage_line",
         "garbage_bytes", "token", "not_utf8")

_ASSIGNMENT = re.compile(rb"^(\s*[A-Za-z0-9_\"-]+\s*=\s*)(.+)$")
#: Pieces of TOML that make a file mean something else, or nothing.
TOKENS = (b'"', b"'", b"[", b"]", b"[[offer]]\n", b"[[merchant]]\n", b"[categories]\n", b"=", b"{", b"}",
          b"\n", b"'''", b'"""', b"#", b",", b"\\", b"0x", b"-", b"\t", b"\r", b"\x00")
#: Values of every TOML type and some edges, to put where another value was.
VALUES = (b"0", b"-1", b"1.5", b"1e3", b"inf", b"nan", b"true", b"false", b'""', b'"x"', b"'\xe9\x9b\xb6\xe5\x94\xae'",
          b"[]", b"[1, 2]", b'["a"]', b"[[1]]", b"{}", b"{id = 1}", b"2026-12-01", b"2026-12-01T08:00:00",
          b"08:00:00", b"9223372036854775807", b"9223372036854775808", b"-9223372036854775809",
          b"99999999999999999999999999", b'"24:00-24:00"', b'["23:00-01:00"]', b'"Asia/Harbin"', b'"America"',
          b"0b101", b"0o17", b"1_000")
#: Bytes that are not UTF-8: a lone continuation byte, a cut sequence, GBK text.
NOT_UTF8 = (b"\xff", b"\x80", b"\xc3", b"\xe4\xb8", "零售".encode("gbk"), b"\xed\xa0\x80")


def damage(data: bytes, rnd: random.Random) -> tuple[bytes, str]:
    """`data` damaged once, in a way chosen by `rnd`, and a note of what was done."""
    how = rnd.choice(KINDS)
    lines = data.split(b"\n")
    if how == "flip" and data:
        buf = bytearray(data)
        i = rnd.randrange(len(buf))
        buf[i] ^= 1 << rnd.randrange(8)
        return bytes(buf), f"flip byte {i}"
    if how == "cut" and data:
        n = rnd.randrange(len(data))
        return data[:n], f"cut at {n}"
    if how == "drop_line" and len(lines) > 1:
        k = rnd.randrange(len(lines))
        del lines[k]
        return b"\n".join(lines), f"drop line {k + 1}"
    if how == "dup_line" and lines:
        k = rnd.randrange(len(lines))
        lines.insert(k, lines[k])
        return b"\n".join(lines), f"duplicate line {k + 1}"
    assigned = [k for k, line in enumerate(lines) if _ASSIGNMENT.match(line)]
    if how == "swap_values" and len(assigned) >= 2:
        a, b = rnd.sample(assigned, 2)
        ma, mb = _ASSIGNMENT.match(lines[a]), _ASSIGNMENT.match(lines[b])
        assert ma is not None and mb is not None
        lines[a], lines[b] = ma.group(1) + mb.group(2), mb.group(1) + ma.group(2)
        return b"\n".join(lines), f"swap the values of lines {a + 1} and {b + 1}"
    if how == "replace_value" and assigned:
        k = rnd.choice(assigned)
        m = _ASSIGNMENT.match(lines[k])
        assert m is not None
        value = rnd.choice(VALUES)
        lines[k] = m.group(1) + value
        return b"\n".join(lines), f"line {k + 1} set to {value!r}"
    if how == "garbage_line":
        k = rnd.randrange(len(lines) + 1)
        lines.insert(k, bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 30))))
        return b"\n".join(lines), f"garbage line before line {k + 1}"
    at = rnd.randrange(len(data) + 1)
    if how == "token":
        piece = rnd.choice(TOKENS)
    elif how == "not_utf8":
        piece = rnd.choice(NOT_UTF8)
    else:
        how = "garbage_bytes"
        piece = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 8)))
    return data[:at] + piece + data[at:], f"{how} {piece!r} at byte {at}"


def damage_some(data: bytes, rnd: random.Random, most: int = 3) -> tuple[bytes, list[str]]:
    """`data` damaged 1..`most` times; the notes of what was done."""
    notes = []
    for _ in range(rnd.randrange(1, most + 1)):
        data, note = damage(data, rnd)
        notes.append(note)
    return data, notes
