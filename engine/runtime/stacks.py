"""Stack ids (the kstack/ustack builtins' values) to printed frames.

The kernel stores each distinct stack once in the stack map and hands the program its id; a
field or an aggregation key holds the id (ustack: with the tgid in the high half, so a user
stack is symbolized in its own process even after the sample). This reads a stack's addresses
from the map and names them through the Symbolizer. A stack the kernel could not store (map
full, hash collision) prints bcc's `[Missed Kernel Stack]`; a stack gone from the map when read
(--clear) prints `[Lost Stack]` and is counted; none is dropped in silence.
"""

from __future__ import annotations

import struct
from typing import Any, Sequence

from engine.output.values import Stack, Symbol, Text
from engine.plan import model as M
from engine.runtime.symbols import Symbolizer

EFAULT = 14  # bpf_get_stackid: no stack of that kind here (a user-mode sample's kernel stack)
KERNEL, USER = "kernel", "user"
USTACK = "ustack"  # the decoder of a user stack id (engine.decoders)
MISSED = {KERNEL: "[Missed Kernel Stack]", USER: "[Missed User Stack]"}


class StackReader:
    """Decodes stack ids of one loaded program (its `stack_traces` map)."""

    def __init__(self, table: Any, symbolizer: Symbolizer | None = None) -> None:
        self.table = table
        self.symbols = symbolizer or Symbolizer()
        self.lost = 0  # ids read after their stack left the map

    def addresses(self, stack_id: int) -> list[int] | None:
        """The stack's addresses, innermost first; None when the map no longer holds it."""
        try:
            return [a for a in self.table.walk(stack_id)]
        except (KeyError, ValueError):
            return None

    def stack(self, raw: int, kind: str, frames: int = 0) -> Stack:
        """The printed stack of a raw field value (kind: KERNEL or USER)."""
        stack_id = raw & 0xFFFFFFFF
        if stack_id >= 1 << 31:
            stack_id -= 1 << 32
        if stack_id < 0:
            if stack_id == -EFAULT:
                return Stack((), kind)
            return Stack((Text(MISSED[kind]),), kind)
        addrs = self.addresses(stack_id)
        if addrs is None:
            self.lost += 1
            return Stack((Text("[Lost Stack]"),), kind)
        if frames:
            addrs = addrs[:frames]
        if kind == KERNEL:
            names = [self.symbols.kernel(a) for a in addrs]
        else:
            pid = raw >> 32
            names = [self.symbols.user(pid, a) for a in addrs]
        return Stack(tuple(Symbol(n.name) if isinstance(n, Symbol) else n for n in names), kind)

    def remember(self, bpf: Any, places: Sequence[tuple[str, int]]) -> None:
        """Read the mappings of every process whose user stacks the aggregations hold now,
        while it lives: `places` are (hash map, offset of a ustack in its key). The runner
        calls this every second, so a process that exits before the end still resolves."""
        for name, offset in places:
            for key in bpf[name]:  # the keys (bcc tables iterate them)
                raw = struct.unpack_from("=Q", bytes(key), offset)[0]
                self.symbols.remember(raw >> 32)

    def report(self) -> str:
        """What did not print as it was (stacks lost from the map, unresolved frames)."""
        parts = [self.symbols.report()]
        if self.lost:
            parts.append(f"stacks: {self.lost} ids gone from the stack map when read")
        return "; ".join(p for p in parts if p)


def user_stack_places(program: M.Program) -> list[tuple[str, int]]:
    """(map, key offset) of each user stack in an aggregation key, every epoch's map."""
    fields = {f.name: f for f in program.fields}
    out = []
    for sink in program.aggregations:
        for slot in sink.key.slots:
            field = fields.get(
                next((c.field for c in sink.by if M.slot_name(c.field) == slot.name), "")
            )
            if field is not None and field.decoder == "ustack":
                out += [(maps.hash, slot.offset) for maps in sink.map_sets]
    return out
