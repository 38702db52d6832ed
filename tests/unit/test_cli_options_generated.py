"""Every option type of `engine run`, over generated boundary tables: a value is accepted exactly
when it is valid (ASCII, finite, in range), and is then parsed to the right value; otherwise
argparse exits 2 with one stderr line naming the flag.

The bulk runs in process, through the real parser `engine run` builds (spec_parser) for a
synthetic spec with one option of each type; test_cli_options.py runs a few of the same values
through the real command. Validity comes from an oracle written independently of engine.cli
(character sets and C ranges, not its regular expressions).
"""

from __future__ import annotations

import contextlib
import io
import itertools
from types import SimpleNamespace
from typing import Any, cast

import pytest

from engine import cli
from engine.plan import model as M

INT_TYPES = ["u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64"]
HEX = "0123456789abcdefABCDEF"


def c_range(ctype: str) -> tuple[int, int]:
    bits = int(ctype[1:])
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if ctype[0] == "s" else (0, 2**bits - 1)


def oracle_int(text: str, ctype: str) -> int | None:
    """The value `text` denotes as a C integer of `ctype`, or None: optional spaces around,
    a sign, then 0x and hex digits or decimal digits without a leading zero (so no octal)."""
    body = text.strip(" ")
    sign = 1
    if body[:1] in ("+", "-"):
        sign, body = (-1 if body[0] == "-" else 1), body[1:]
    if body[:2] in ("0x", "0X") and len(body) > 2 and all(c in HEX for c in body[2:]):
        value = sign * int(body[2:], 16)
    elif body and all(c in "0123456789" for c in body) and (body == "0" or body[0] != "0"):
        value = sign * int(body)
    else:
        return None
    lo, hi = c_range(ctype)
    return value if lo <= value <= hi else None


def int_candidates(ctype: str) -> list[str]:
    lo, hi = c_range(ctype)
    numbers = [lo - 1, lo, lo + 1, -1, 0, 1, hi - 1, hi, hi + 1, 2**64, -(2**63) - 1, 10**30]
    out = []
    for n in numbers:
        out += [str(n), hex(n), f"+{n}" if n >= 0 else str(n), f" {n} ", f"0{n}"]
    out += [
        "", " ", "-", "+", "0x", "0X1f", "0x-1", "1_0", "1.0", "1e3", "00", "007", "abc",
        "٣", "١٢", "１２", "12\n", "1\t", "\u00a01", "\udc80", "1 2", "0b1", "0o7", "1,2",
    ]  # fmt: skip
    return out


def str_candidates() -> list[str]:
    return [
        "", "a", " ", "~", "x" * 255, "x" * 256, "a\tb", "a\nb", "é", "\x7f", "\udc80",
        "ab c", "Ω", "\x00",
    ]  # fmt: skip


def oracle_str(text: str) -> bool:
    return 1 <= len(text) <= 255 and all(32 <= ord(c) <= 126 for c in text)


OPTIONS = (
    [M.Option(f"i_{t}", "", f"--i-{t}", t, False, "an integer", "N") for t in INT_TYPES]
    + [M.Option(f"l_{t}", "", f"--l-{t}", t, True, "a list", "N,...") for t in INT_TYPES]
    + [
        M.Option("s", "-s", "--str", "str", False, "a string", "TEXT"),
        M.Option("b", "-b", "--flag", "bool", False, "a switch", ""),
    ]
)


@pytest.fixture(scope="module")
def parser() -> Any:
    plan = SimpleNamespace(name="generated", description="", options=OPTIONS)
    return cli.spec_parser("run", cast(M.Plan, plan))


def parse(parser: Any, *args: str) -> tuple[Any, str]:
    """(namespace or None, stderr) for `engine run SPEC *args`."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            return parser.parse_args(["spec.yaml", *args]), err.getvalue()
        except SystemExit as exc:
            assert exc.code == 2, (args, exc.code, err.getvalue())
            return None, err.getvalue()


def assert_refused(stderr: str, flag: str, args: tuple[str, ...]) -> None:
    lines = stderr.splitlines()
    assert len(lines) == 1, (args, stderr)
    assert lines[0].startswith(f"engine run: error: argument {flag}: "), (args, stderr)


def check(parser: Any, flag: str, text: str, dest: str, expected: object, named: str = "") -> None:
    """`flag text` parses to `expected`, or, with expected None, is refused in one line naming
    the flag (as `named`, when argparse names it by all its spellings)."""
    ns, err = parse(parser, f"{flag}={text}")  # = keeps a leading '-' a value
    if expected is None:
        assert ns is None, (flag, text, getattr(ns, dest))
        assert_refused(err, named or flag, (flag, text))
    else:
        assert ns is not None, (flag, text, err)
        assert getattr(ns, dest) == expected, (flag, text)
        assert err == ""


@pytest.mark.parametrize("ctype", INT_TYPES)
def test_integer_option(parser: Any, ctype: str) -> None:
    for text in int_candidates(ctype):
        check(parser, f"--i-{ctype}", text, f"opt_i_{ctype}", oracle_int(text, ctype))


@pytest.mark.parametrize("ctype", INT_TYPES)
def test_list_option(parser: Any, ctype: str) -> None:
    singles = int_candidates(ctype)
    items = [c for c in singles if "," not in c][::3]
    for a, b in itertools.product(items, repeat=2):
        values = [oracle_int(a, ctype), oracle_int(b, ctype)]
        expected = None if None in values else values
        check(parser, f"--l-{ctype}", f"{a},{b}", f"opt_l_{ctype}", expected)
    for text in ["", ",", "1,", ",1", "1,,2", "1, 2", " 1 ,2 "]:
        values = [oracle_int(x, ctype) for x in text.split(",")]
        check(parser, f"--l-{ctype}", text, f"opt_l_{ctype}", None if None in values else values)


@pytest.mark.parametrize("count", [1, 8, 9, cli.SET_LIMIT, cli.SET_LIMIT + 1])
def test_list_size_limit(parser: Any, count: int) -> None:
    text = ",".join(str(i % 200) for i in range(count))
    expected = [i % 200 for i in range(count)] if count <= cli.SET_LIMIT else None
    check(parser, "--l-u8", text, "opt_l_u8", expected)


def test_string_option(parser: Any) -> None:
    for text in str_candidates():
        check(parser, "--str", text, "opt_s", text if oracle_str(text) else None, "-s/--str")


def test_bool_option(parser: Any) -> None:
    ns, err = parse(parser, "--flag")
    assert ns is not None and ns.opt_b is True and err == ""
    ns, _ = parse(parser)
    assert ns is not None and ns.opt_b is False
    for text in ["1", "yes", ""]:
        ns, err = parse(parser, f"--flag={text}")
        assert ns is None
        assert_refused(err, "-b/--flag", ("--flag", text))


SECONDS = [
    ("1", 1.0), ("0.5", 0.5), (".5", 0.5), ("5.", 5.0), ("1e3", 1000.0), ("1E-3", 0.001),
    ("31622400", 31622400.0), ("31622400.5", None), ("31622401", None), ("0", None),
    ("0.0", None), ("-1", None), ("+1", None), ("nan", None), ("NaN", None), ("inf", None),
    ("-inf", None), ("infinity", None), ("1e308", None), ("1e400", None), ("1e", None),
    ("", None), (" 1", None), ("1_0", None), ("0x10", None), ("٣", None), ("１２", None),
    ("1\n", None), ("e3", None), (".", None),
]  # fmt: skip
WAKEUP = [
    ("0", 0), ("1", 1), ("32", 32), ("65536", 65536), ("65537", None), ("-1", None),
    ("18446744073709551616", None), ("+1", None), ("0x10", None), ("٣", None), ("１２", None),
    ("1.0", None), ("", None), ("1_0", None),
]  # fmt: skip
PAGES = [
    ("1", 1), ("2", 2), ("64", 64), ("65536", 65536), ("3", None), ("0", None), ("-2", None),
    ("131072", None), ("0x10", None), ("٣", None), ("１６", None), ("16.0", None), ("", None),
    ("1_6", None), (" 16", None),
]  # fmt: skip


@pytest.mark.parametrize("flag", ["--duration", "--interval"])
@pytest.mark.parametrize(("text", "expected"), SECONDS)
def test_seconds_flags(parser: Any, flag: str, text: str, expected: float | None) -> None:
    check(parser, flag, text, flag[2:], expected)


@pytest.mark.parametrize(("text", "expected"), WAKEUP)
def test_wakeup_flag(parser: Any, text: str, expected: int | None) -> None:
    check(parser, "--wakeup", text, "wakeup", expected)


@pytest.mark.parametrize(("text", "expected"), PAGES)
def test_buffer_pages_flag(parser: Any, text: str, expected: int | None) -> None:
    check(parser, "--buffer-pages", text, "buffer_pages", expected)
