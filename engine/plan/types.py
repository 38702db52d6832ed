"""What the planner asks of a type source: the `TypeSource` protocol.

The planner resolves names (`sk.__sk_common.skc_dport`, `struct sock`, `IPPROTO_ICMP`, a
function's arguments) against type information. Today that is kernel BTF
(`engine.kernel.btf.Btf`); user-space probes will read an ELF's types instead. Plan code that
needs only types takes a `TypeSource`, so a second implementation needs no planner change.
`KernelTypeSource` adds what only kernel BTF knows: raw tracepoints and tracepoint records.

The records a source returns (`BtfType`, `Kind`, `MemberPath`, `Param`) are BTF's shapes: a
plain, source-neutral description of C types (kind, name, size, members with bit offsets and
bitfield widths, enumerators, prototypes), which another source builds the same way.
"""

from __future__ import annotations

from typing import Protocol

from engine.kernel.btf import Btf, BtfType, Kind, MemberPath, Param

__all__ = ["BtfType", "KernelTypeSource", "Kind", "MemberPath", "Param", "TypeSource"]


class TypeSource(Protocol):
    """C types by id and by name: what resolving spec expressions needs."""

    @property
    def path(self) -> str:
        """Where the types come from (a file), for messages."""
        ...

    def type(self, type_id: int) -> BtfType:
        """The type with this id (0 is void)."""
        ...

    def find(self, name: str, *kinds: Kind) -> BtfType | None:
        """The first type of one of these kinds (any kind if none) with this name."""
        ...

    def names(self, *kinds: Kind) -> list[str]:
        """Every type name of these kinds, sorted (for did-you-mean)."""
        ...

    def strip(self, type_id: int) -> BtfType:
        """The type behind typedefs and qualifiers: the one that gives the layout."""
        ...

    def sizeof(self, type_id: int) -> int:
        """Bytes of a value of this type."""
        ...

    def type_str(self, type_id: int) -> str:
        """C spelling of a type, as in a cast."""
        ...

    def member(self, type_id: int, name: str) -> MemberPath | None:
        """A struct or union member by name (also inside anonymous members): its bit offset,
        type and bitfield width."""
        ...

    def member_names(self, type_id: int) -> list[str]:
        """The member names of a struct or union (for did-you-mean)."""
        ...

    def enum_constant(self, name: str) -> tuple[BtfType, int] | None:
        """The enum defining the constant `name`, and the constant's value."""
        ...

    def enum_names(self) -> list[str]:
        """Every enumerator name (for did-you-mean)."""
        ...

    def function(self, name: str) -> tuple[BtfType, tuple[Param, ...], int] | None:
        """A function's prototype: the function, its parameters and its return type id."""
        ...


class KernelTypeSource(TypeSource, Protocol):
    """Kernel BTF: also the kernel's tracepoints, which only it describes."""

    def raw_tracepoint(self, name: str) -> tuple[Param, ...] | None:
        """A raw tracepoint's arguments (without the ctx)."""
        ...

    def tracepoint_records(self, event: str) -> list[BtfType]:
        """Candidate records (`struct trace_event_raw_*`) of a tracepoint, best first."""
        ...


def kernel_types(btf: Btf) -> KernelTypeSource:
    """Kernel BTF as a type source: the place mypy checks that `Btf` implements the protocol
    (structurally: `Btf` does not name it, the kernel package sits below the planner)."""
    return btf
