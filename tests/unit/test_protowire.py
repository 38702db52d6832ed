"""engine.kernel.protowire: the protobuf wire format the CRI source speaks, against the
encodings protobuf's own documentation spells out byte by byte, and round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.kernel import cri
from engine.kernel import protowire as pw


def test_the_documented_encodings() -> None:
    """protobuf.dev/programming-guides/encoding: field 1 = 150, field 2 = "testing"."""
    assert pw.message((1, 150)) == bytes.fromhex("089601")
    assert pw.message((2, "testing")) == bytes.fromhex("120774657374696e67")
    assert pw.message((1, -2)) == bytes.fromhex("08feffffffffffffffff01")  # int32 -2: ten bytes
    assert pw.message((3, True)) == bytes.fromhex("1801")
    # a map<string, string> entry is a message of key = 1, value = 2
    assert pw.message((8, {"a": "b"})) == bytes.fromhex("42060a0161120162")


def test_fields_read_every_value_of_a_repeated_field_in_order() -> None:
    data = pw.message((3, "sleep"), (3, "600"), (1, 7), (9, {"k": "v", "x": "y"}))
    msg = pw.fields(data)
    assert msg[3] == [b"sleep", b"600"] and pw.number(msg, 1) == 7
    assert pw.string_map(msg, 9) == {"k": "v", "x": "y"}
    assert pw.text(msg, 4) == "" and pw.number(msg, 5) == 0 and pw.sub(msg, 6) == {}


def test_fixed_width_fields_are_skipped_over_as_bytes() -> None:
    data = bytes.fromhex("0d010203041101020304050607080801")  # fixed32, fixed64, varint
    msg = pw.fields(data)
    assert msg[1] == [b"\x01\x02\x03\x04", 1] and msg[2] == [bytes(range(1, 9))]


@pytest.mark.parametrize(
    "bad",
    [bytes.fromhex("0a05616263"), bytes.fromhex("08ff"), bytes.fromhex("0b"), b"\xff" * 11],
    ids=["string past the end", "varint past the end", "wire type 3", "varint too long"],
)
def test_bytes_that_are_no_message_raise(bad: bytes) -> None:
    with pytest.raises(pw.WireError):
        pw.fields(bad)


values = st.one_of(
    st.integers(min_value=0, max_value=2**64 - 1),
    st.text(max_size=20),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
)


@given(st.dictionaries(st.integers(min_value=1, max_value=2**29 - 1), values, max_size=8))
def test_what_is_encoded_reads_back(items: dict[int, object]) -> None:
    """One value per field number (a message's field has one type)."""
    msg = pw.fields(pw.message(*items.items()))  # type: ignore[arg-type]
    for num, value in items.items():
        if isinstance(value, dict):
            assert pw.string_map(msg, num) == value
        elif isinstance(value, str):
            assert pw.text(msg, num) == value
        else:
            assert pw.number(msg, num) == value


def test_cri_endpoints_come_from_crictls_variable_or_the_sockets_there_are() -> None:
    env = {"CONTAINER_RUNTIME_ENDPOINT": "unix:///run/crio/crio.sock, /tmp/x.sock"}
    assert cri.endpoints(env) == ["/run/crio/crio.sock", "/tmp/x.sock"]
    assert set(cri.endpoints({})) <= set(cri.ENDPOINTS)  # only those that exist here


def test_a_fixed_width_field_cut_short_raises() -> None:
    with pytest.raises(pw.WireError, match="field 1 runs past the end"):
        pw.fields(bytes.fromhex("090102"))
    with pytest.raises(pw.WireError, match="field 2 runs past the end"):
        pw.fields(bytes.fromhex("1501"))
