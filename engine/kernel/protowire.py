"""The protocol buffers wire format, as much of it as the CRI source needs (engine.kernel.cri).

The container runtime interface speaks protobuf over gRPC. Its few requests and the fields read
from its answers are encoded and decoded here by field number (the numbers are the CRI API's
`api.proto`, cited where they are used), so no generated code is needed and no protobuf
package: gRPC carries the bytes as they are.
"""

from __future__ import annotations

from typing import Union

Value = Union[int, bytes]  # a varint, or a length-delimited field's bytes (string, message)
VARINT, I64, LEN, I32 = 0, 1, 2, 5


class WireError(ValueError):
    """Bytes that are not a protobuf message."""


def varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # negative int32/int64 take ten bytes, as two's complement
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_varint(data: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        if i >= len(data) or shift > 63:
            raise WireError("a varint runs past the end")
        b = data[i]
        n |= (b & 0x7F) << shift
        i += 1
        shift += 7
        if not b & 0x80:
            return n, i


def fields(data: bytes) -> dict[int, list[Value]]:
    """A message's fields by number, each with every value it has, in order (a repeated field
    or a map has several). Fixed-width fields come back as their bytes."""
    out: dict[int, list[Value]] = {}
    i = 0
    while i < len(data):
        key, i = read_varint(data, i)
        number, kind = key >> 3, key & 7
        value: Value
        if kind == VARINT:
            value, i = read_varint(data, i)
        elif kind == LEN:
            size, i = read_varint(data, i)
            if i + size > len(data):
                raise WireError(f"field {number} runs past the end")
            value, i = data[i : i + size], i + size
        elif kind in (I64, I32):
            size = 8 if kind == I64 else 4
            if i + size > len(data):
                raise WireError(f"field {number} runs past the end")
            value, i = data[i : i + size], i + size
        else:
            raise WireError(f"field {number} has wire type {kind}")
        out.setdefault(number, []).append(value)
    return out


def text(msg: dict[int, list[Value]], number: int) -> str:
    """A string field ("" when absent; the last value wins, as protobuf merges)."""
    values = msg.get(number)
    return values[-1].decode("utf-8", "replace") if values and isinstance(values[-1], bytes) else ""


def number(msg: dict[int, list[Value]], field: int) -> int:
    values = msg.get(field)
    return values[-1] if values and isinstance(values[-1], int) else 0


def sub(msg: dict[int, list[Value]], field: int) -> dict[int, list[Value]]:
    """An embedded message ({} when absent)."""
    values = msg.get(field)
    return fields(values[-1]) if values and isinstance(values[-1], bytes) else {}


def string_map(msg: dict[int, list[Value]], field: int) -> dict[str, str]:
    """A map<string, string>: repeated entries of key = 1, value = 2."""
    out = {}
    for entry in msg.get(field, ()):
        if isinstance(entry, bytes):
            kv = fields(entry)
            out[text(kv, 1)] = text(kv, 2)
    return out


Field = tuple[int, Union[int, bool, str, bytes, dict[str, str]]]


def message(*items: Field) -> bytes:
    """Encode fields (number, value): int and bool as varints, str and bytes (an encoded
    message) length-delimited, a dict as a map<string, string>. A zero or empty value is
    written all the same (proto3 would leave it out; readers take it alike)."""
    out = bytearray()
    for num, value in items:
        if isinstance(value, dict):
            for k, v in value.items():
                out += message((num, message((1, k), (2, v))))
        elif isinstance(value, (bool, int)):
            out += varint(num << 3 | VARINT) + varint(int(value))
        else:
            raw = value.encode() if isinstance(value, str) else value
            out += varint(num << 3 | LEN) + varint(len(raw)) + raw
    return bytes(out)
