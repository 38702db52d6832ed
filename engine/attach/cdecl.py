"""C declarations of user-space function arguments: `const char *node` -> a name and a VT.

A user-space binary has no BTF, and reading DWARF is not worth its weight here: the spec
declares each argument's C type (`args: [const char *node, int flags]`) and the return type
(`ret: int`), and the calling convention says where each one is. Only what can be read
without knowing a struct layout is accepted: integer types, and pointers (user pointers: a
`char *` is a string for `decode: str`, any other pointer is an address). A struct passed by
value has no register of its own, so it is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.errors import did_you_mean
from engine.plan.values import VT, VKind

# Integer types by their words (sorted, so `unsigned long` == `long unsigned`): (size, signed)
_WORDS: dict[tuple[str, ...], tuple[int, bool]] = {
    ("char",): (1, True),
    ("char", "signed"): (1, True),
    ("char", "unsigned"): (1, False),
    ("short",): (2, True),
    ("int", "short"): (2, True),
    ("short", "signed"): (2, True),
    ("int", "short", "signed"): (2, True),
    ("short", "unsigned"): (2, False),
    ("int", "short", "unsigned"): (2, False),
    ("int",): (4, True),
    ("signed",): (4, True),
    ("int", "signed"): (4, True),
    ("unsigned",): (4, False),
    ("int", "unsigned"): (4, False),
    ("long",): (8, True),
    ("int", "long"): (8, True),
    ("long", "signed"): (8, True),
    ("int", "long", "signed"): (8, True),
    ("long", "unsigned"): (8, False),
    ("int", "long", "unsigned"): (8, False),
    ("long", "long"): (8, True),
    ("int", "long", "long"): (8, True),
    ("long", "long", "signed"): (8, True),
    ("int", "long", "long", "signed"): (8, True),
    ("long", "long", "unsigned"): (8, False),
    ("int", "long", "long", "unsigned"): (8, False),
}
# One-word type names (typedefs every C program sees): (size, signed)
_NAMED: dict[str, tuple[int, bool]] = {
    "bool": (1, False),
    "_Bool": (1, False),
    "size_t": (8, False),
    "ssize_t": (8, True),
    "off_t": (8, True),
    "loff_t": (8, True),
    "pid_t": (4, True),
    "uid_t": (4, False),
    "gid_t": (4, False),
    "mode_t": (4, False),
    "socklen_t": (4, False),
    "uintptr_t": (8, False),
    "intptr_t": (8, True),
    **{f"u{b}": (b // 8, False) for b in (8, 16, 32, 64)},
    **{f"s{b}": (b // 8, True) for b in (8, 16, 32, 64)},
    **{f"__u{b}": (b // 8, False) for b in (8, 16, 32, 64)},
    **{f"__s{b}": (b // 8, True) for b in (8, 16, 32, 64)},
    **{f"uint{b}_t": (b // 8, False) for b in (8, 16, 32, 64)},
    **{f"int{b}_t": (b // 8, True) for b in (8, 16, 32, 64)},
}
_QUALIFIERS = {"const", "volatile", "restrict", "__restrict"}
_TAGS = ("struct", "union", "enum")
_TOKEN = re.compile(r"\s*(\*|[A-Za-z_][A-Za-z0-9_]*)")
# what a type may be spelled as, for the did-you-mean of an unknown one
_ORDER = ("signed", "unsigned", "short", "long", "char", "int")  # how C programs spell them
KNOWN_TYPES = sorted(
    {" ".join(sorted(w, key=_ORDER.index)) for w in _WORDS} | set(_NAMED) | {"void *", "char *"}
)
MAX_DEPTH = 3  # pointers to pointers to pointers: more is a typo


class DeclError(ValueError):
    """A declaration the engine cannot read; the message says what would be right."""


@dataclass(frozen=True)
class Decl:
    """One declared argument (or return value: name ""): its C text and planner type."""

    name: str
    vt: VT
    text: str


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise DeclError(
                f"'{text}' is not a C declaration: unexpected '{text[pos:].strip()[0]}' "
                "(write a type, then `*`s for pointers, then a name, e.g. `const char *path`)"
            )
        out.append(match[1])
        pos = match.end()
    return out


def _base(words: list[str], text: str, pointer: bool) -> tuple[VT, str]:
    """The type the words name (without pointers): (VT of the value, its C spelling)."""
    if words and words[0] in ("struct", "union", "enum"):
        if len(words) != 2:
            raise DeclError(f"'{text}': write `{words[0]} NAME *`")
        label = " ".join(words)
        if words[0] == "enum" and not pointer:
            return VT(VKind.INT, 4, True, label=label), label
        if not pointer:
            raise DeclError(
                f"'{text}': a {words[0]} passed by value is not in one register; "
                f"declare a pointer (`{label} *`) or the register as an integer"
            )
        return VT(VKind.STRUCT, label=label), label
    label = " ".join(words)
    if words == ["void"]:
        if not pointer:
            raise DeclError(f"'{text}': void has no value; declare a type")
        return VT(VKind.VOID, label="void"), "void"
    key = tuple(sorted(words))
    found = _WORDS.get(key) or (_NAMED.get(words[0]) if len(words) == 1 else None)
    if found is None:
        raise DeclError(
            f"unknown type '{label}' in '{text}'; expected an integer type (int, unsigned long, "
            f"size_t, u32, ...), or a pointer{_hint(words)}"
        )
    size, signed = found
    return VT(VKind.INT, size, signed, label=label, char=words[-1] == "char"), label


def _hint(words: list[str]) -> str:
    """A did-you-mean for an unknown type: the whole spelling, else its first word."""
    return did_you_mean(" ".join(words), KNOWN_TYPES) or did_you_mean(
        words[0], ["struct", "union", "enum", "unsigned", "signed", *_NAMED]
    )


def parse(text: str, named: bool = True) -> Decl:
    """One declaration: `TYPE [*...] NAME` (named) or a bare type `TYPE [*...]` (a return
    type). Pointers are user pointers; `const`, `volatile` and `restrict` are ignored."""
    tokens = [t for t in _tokens(text) if t not in _QUALIFIERS]
    name = ""
    if named and tokens and tokens[-1] != "*":
        if len(tokens) == 2 and tokens[0] in _TAGS:  # `enum e`, `struct foo`: the tag's NAME
            raise DeclError(_tag_without_name(text.strip(), tokens[0], tokens[1]))
        if len(tokens) == 1 or (tokens[-2] != "*" and _is_type(tokens)):
            raise DeclError(f"'{text.strip()}' has no name: write `TYPE NAME`, e.g. `int fd`")
        name = tokens.pop()
    elif named:
        raise DeclError(f"'{text.strip()}' has no name: write `TYPE NAME`, e.g. `char *path`")
    depth = 0
    while tokens and tokens[-1] == "*":
        tokens.pop()
        depth += 1
    if "*" in tokens:
        raise DeclError(f"'{text.strip()}': `*` goes after the type, before the name")
    if not tokens:
        raise DeclError(f"'{text.strip()}' has no type")
    if depth > MAX_DEPTH:
        raise DeclError(f"'{text.strip()}': at most {MAX_DEPTH} levels of pointers")
    base, label = _base(tokens, text.strip(), depth > 0)
    if depth == 0:
        return Decl(name, base, label)
    ptr_label = f"{label} {'*' * depth}"
    char = depth == 1 and base.char
    vt = VT(VKind.PTR, 8, label=ptr_label, char=char, user=True)
    return Decl(name, vt, ptr_label)


def _tag_without_name(text: str, tag: str, tag_name: str) -> str:
    """`enum e` or `struct foo` as an argument: the word after the tag is its name, not the
    argument's; a struct or union by value is refused anyway, so say both at once."""
    if tag == "enum":
        return f"'{text}' has no argument name: write e.g. `enum {tag_name} mode`"
    return (
        f"'{text}' has no argument name, and a {tag} passed by value is not in one register: "
        f"declare a named pointer, e.g. `{tag} {tag_name} *p`"
    )


def _is_type(tokens: list[str]) -> bool:
    """All the words form a type (so none of them is a name): `unsigned long`, `size_t`."""
    return tuple(sorted(tokens)) in _WORDS or (len(tokens) == 1 and tokens[0] in _NAMED)


def parse_args(texts: list[str] | tuple[str, ...]) -> list[Decl]:
    """Each declaration of an `args:` list, positional; DeclError names the bad one."""
    decls = [parse(t) for t in texts]
    seen: set[str] = set()
    for d in decls:
        if d.name != "_" and d.name in seen:
            raise DeclError(f"argument '{d.name}' is declared twice")
        seen.add(d.name)
    return decls
