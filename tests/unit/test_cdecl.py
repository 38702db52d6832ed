"""engine.attach.cdecl: the C declarations a user-space probe's `args:` and `ret:` are."""

from __future__ import annotations

import pytest

from engine.attach.cdecl import DeclError, parse, parse_args
from engine.plan.values import VKind


@pytest.mark.parametrize(
    ("text", "size", "signed", "label"),
    [
        ("int fd", 4, True, "int"),
        ("unsigned int n", 4, False, "unsigned int"),
        ("long unsigned int n", 8, False, "long unsigned int"),
        ("unsigned n", 4, False, "unsigned"),
        ("short s", 2, True, "short"),
        ("unsigned char c", 1, False, "unsigned char"),
        ("signed char c", 1, True, "signed char"),
        ("long long x", 8, True, "long long"),
        ("unsigned long long x", 8, False, "unsigned long long"),
        ("const volatile size_t len", 8, False, "size_t"),
        ("ssize_t r", 8, True, "ssize_t"),
        ("pid_t p", 4, True, "pid_t"),
        ("uid_t u", 4, False, "uid_t"),
        ("bool b", 1, False, "bool"),
        ("u16 port", 2, False, "u16"),
        ("s64 v", 8, True, "s64"),
        ("uint32_t v", 4, False, "uint32_t"),
        ("int8_t v", 1, True, "int8_t"),
        ("uintptr_t p", 8, False, "uintptr_t"),
        ("enum color c", 4, True, "enum color"),
    ],
)
def test_integer_types(text: str, size: int, signed: bool, label: str) -> None:
    d = parse(text)
    assert (d.vt.kind, d.vt.size, d.vt.signed, d.vt.label) == (VKind.INT, size, signed, label)
    assert d.name == text.split()[-1] and not d.vt.user


def test_pointers_are_user_pointers_and_char_star_is_a_string() -> None:
    s = parse("const char *node")
    assert (s.name, s.vt.kind, s.vt.char, s.vt.user, s.vt.ctype) == (
        "node",
        VKind.PTR,
        True,
        True,
        "u64",
    )
    assert s.vt.label == "char *"
    pointers = [("void *buf", "void *"), ("char **argv", "char **"),
                ("struct addrinfo **res", "struct addrinfo **"), ("int*p", "int *")]  # fmt: skip
    for text, label in pointers:
        d = parse(text)
        assert (d.vt.kind, d.vt.label, d.vt.user, d.vt.char) == (VKind.PTR, label, True, False)


def test_return_types_have_no_name() -> None:
    assert parse("int", named=False).vt.label == "int"
    assert parse("unsigned long", named=False).vt.size == 8
    r = parse("char *", named=False)
    assert (r.name, r.vt.char, r.vt.user) == ("", True, True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("strcut foo *x", "unknown type 'strcut foo' in 'strcut foo *x'; expected an integer"
         " type (int, unsigned long, size_t, u32, ...), or a pointer; did you mean 'struct'?"),
        ("unsinged int n", "did you mean 'unsigned int'?"),
        ("size_tt n", "did you mean 'size_t'?"),
        ("int", "'int' has no name: write `TYPE NAME`, e.g. `int fd`"),
        ("unsigned long", "'unsigned long' has no name"),
        ("char *", "'char *' has no name"),
        ("struct addrinfo hints", "a struct passed by value is not in one register; declare a "
         "pointer (`struct addrinfo *`) or the register as an integer"),
        ("enum e", "'enum e' has no argument name: write e.g. `enum e mode`"),
        ("const enum e", "'const enum e' has no argument name: write e.g. `enum e mode`"),
        ("struct foo", "'struct foo' has no argument name, and a struct passed by value is not in"
         " one register: declare a named pointer, e.g. `struct foo *p`"),
        ("union u", "'union u' has no argument name, and a union passed by value"),
        ("void v", "void has no value"),
        ("int a[4]", "unexpected '['"),
        ("int * * * * p", "at most 3 levels of pointers"),
        ("int *p q", "`*` goes after the type, before the name"),
    ],
)  # fmt: skip
def test_refusals_say_what_would_be_right(text: str, message: str) -> None:
    with pytest.raises(DeclError) as exc:
        parse(text)
    assert message in str(exc.value)


def test_argument_lists() -> None:
    decls = parse_args(["const char *node", "const char *service", "void *_", "void *_"])
    assert [d.name for d in decls] == ["node", "service", "_", "_"]
    with pytest.raises(DeclError, match="argument 'node' is declared twice"):
        parse_args(["int node", "long node"])
