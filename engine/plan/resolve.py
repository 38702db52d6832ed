"""Resolve: spec expressions -> typed values and the C steps that compute them.

Within one attach alternative (a `Scope`: its arguments, tracepoint record, `let` names and
the steps emitted so far), a `Resolver` turns `sk.__sk_common.skc_dport` into loads at BTF
offsets, `transport_header(skb) as icmphdr` into a pointer sum and a cast, and conditions into
typed `model.CExpr` trees. Problems are `PlanError`s with the column inside the expression;
the planner locates and collects them.
"""

from __future__ import annotations

import dataclasses
import weakref
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from engine import nodes
from engine.attach import KINDS, AttachKind
from engine.errors import NameIndex, did_you_mean
from engine.kernel.btf import Kind
from engine.memory import AddressSpace
from engine.plan import arith, strmatch
from engine.plan import model as M
from engine.plan.state import STATE_HELPERS, StateResolver
from engine.plan.types import TypeSource
from engine.plan.values import (
    INET_OPTION,
    PINNED,
    VT,
    AlreadyReported,
    PlanError,
    Provenance,
    Val,
    VKind,
    constant_val,
    fits,
    fits64,
    inet_value,
    int_vt,
    is_constant,
    vt_of,
)
from engine.spec import expr as E

COMM_LEN = 16
# options a number is not compared with, and what they compare with instead
NOT_NUMBER_OPTIONS = {
    "str": "${0} is a string; compare it with a string field such as comm",
    INET_OPTION: "${0} is an address; compare it with an address field (`decode: inet`), "
    "as in `daddr == ${0}`",
}
MAX_OFFSET = (1 << 31) - 1  # an index's byte offset from its pointer, as C's int reaches
BUILTINS: dict[str, tuple[str, str]] = {
    "pid": ("u32", "tgid"),
    "tgid": ("u32", "tgid"),
    "tid": ("u32", "tid"),
    "uid": ("u32", "uid"),
    "gid": ("u32", "gid"),
    "ktime_ns": ("u64", "ktime_ns"),
    "boot_ns": ("u64", "boot_ns"),
    "cpu": ("u32", "cpu"),
    "cgroup_id": ("u64", "cgroup_id"),
}
FUNC = "func"  # the builtin naming the attach target that fired (one BPF function each)
# the stack builtins: a stack id in the stack map (ustack: with the tgid, to symbolize later);
# `kstack(N)` prints at most N frames (the map keeps PERF_MAX_STACK_DEPTH, 127)
STACKS = ("kstack", "ustack")
MAX_FRAMES = 127
MNTNS_PATH = ("nsproxy", "mnt_ns", "ns", "inum")  # the `mntns_id` builtin, from `task`
# the pid and thread id as the task's own pid namespace numbers them (inside a container):
# the `struct pid` each is read from, from `task`
NS_IDS = {"ns_pid": ("group_leader", "thread_pid"), "ns_tid": ("thread_pid",)}
HELPERS = (
    "transport_header", "network_header", "mac_header", "sock_saddr", "sock_daddr", "inet",
    *STACKS, *STATE_HELPERS,
)  # fmt: skip


_INDEXES: weakref.WeakKeyDictionary[TypeSource, dict[str, NameIndex]] = weakref.WeakKeyDictionary()


def name_index(btf: TypeSource, what: str, names: Callable[[], Iterable[str]]) -> NameIndex:
    """The did-you-mean index of one kind of name in `btf`, built on first use only."""
    per_btf = _INDEXES.setdefault(btf, {})
    if what not in per_btf:
        per_btf[what] = NameIndex(names())
    return per_btf[what]


def enum_constant_index(btf: TypeSource) -> NameIndex:
    return name_index(btf, "enum constants", btf.enum_names)


# --- per-alternative code builder -------------------------------------------------------


@dataclass
class Scope:
    """Names visible to expressions of one attach alternative, and the steps emitted so far."""

    btf: TypeSource
    kind: str
    params: dict[str, tuple[int, int]]  # name -> (index, BTF type id)
    ret: int | VT | None  # the return value's BTF type id, or its declared type (uretprobe)
    record: dict[str, tuple[int, VT]] | None  # tracepoint args: name -> (offset, type)
    record_label: str = ""
    record_note: str = ""  # why a field may be missing (BTF could not tell the record)
    steps: list[M.Step] = field(default_factory=list)
    bindings: dict[str, Val] = field(default_factory=dict)
    lazy: dict[str, E.Node] = field(default_factory=dict)  # `let` names not yet computed
    failed: set[str] = field(default_factory=set)  # `let` names whose error was reported
    stash: dict[str, int] = field(default_factory=dict)  # stash slot -> argument index
    nargs: int = 0  # the function's argument count (fexit reads ret after them)
    cache: dict[str, Val] = field(default_factory=dict)
    loads: dict[tuple[str, int, int, str], str] = field(default_factory=dict)
    counter: int = 0
    states: dict[str, M.StateMap] = field(default_factory=dict)  # the spec's state maps
    provenance: Provenance = field(default_factory=Provenance)  # shared by the spec's scopes
    # arguments declared in the spec by C type (user-space probes): name -> (index, type)
    declared: dict[str, tuple[int, VT]] = field(default_factory=dict)

    @property
    def attach(self) -> AttachKind:
        return KINDS[self.kind]

    def local(self) -> str:
        self.counter += 1
        return f"v{self.counter}"

    def emit(self, step: M.Step) -> None:
        self.steps.append(step)


class Resolver:
    """Turns expression trees into steps and typed values within a Scope."""

    def __init__(self, scope: Scope, enum_lookup: Callable[[str], int | None]) -> None:
        self.s = scope
        self.btf = scope.btf
        self.enum_lookup = enum_lookup
        # how an arithmetic operand resolves: a filter sees its probe's fields here
        self.leaf: Callable[[E.Node], Val] = self.value

    # -- names -------------------------------------------------------------------------------
    def name(self, node: E.Name) -> Val:
        s = self.s
        if node.name in s.failed:
            raise AlreadyReported()  # its own error was reported where it was bound
        if node.name in s.bindings:
            return s.bindings[node.name]
        if node.name in s.lazy:  # a `let`: computed where first used, once
            return self.let(node)
        if node.name in s.cache:
            return s.cache[node.name]
        val = self._fresh_name(node)
        s.cache[node.name] = val
        return val

    def let(self, node: E.Name) -> Val:
        """Compute a `let` and, first, the `let`s it uses, innermost first, without recursing.

        A chain of lets (each using the one before) is walked with an explicit stack, so its
        length is bounded by the number of lets, not by Python's recursion limit; a let that
        uses itself, directly or through others, is an error naming the cycle.
        """
        s = self.s
        stack = [node.name]
        while stack:
            name = stack[-1]
            pending = [
                n.name
                for n in E.names_in(s.lazy[name])
                if n.name in s.lazy and n.name not in s.bindings and n.name not in s.failed
            ]
            for dep in pending:
                if dep in stack:
                    loop = stack[stack.index(dep) :]
                    if len(loop) == 1:
                        raise PlanError(f"`let` '{dep}' uses itself", node.col)
                    cycle = " -> ".join([*loop, dep])
                    raise PlanError(f"`let`s use each other in a cycle ({cycle})", node.col)
            if pending:
                stack.append(pending[0])
                continue
            s.bindings[name] = self.value(s.lazy[name])
            stack.pop()
        return s.bindings[node.name]

    def _in_space(self, vt: VT) -> VT:
        """An argument's pointer points into the attach family's address space: a user-space
        probe's pointers are user pointers, read only with the user helpers."""
        if vt.kind is VKind.PTR and self.s.attach.address_space is AddressSpace.USER:
            return dataclasses.replace(vt, user=True)
        return vt

    def _fresh_name(self, node: E.Name) -> Val:
        s = self.s
        name = node.name
        if name == "args" and s.record is not None:
            return Val(VT(VKind.STRUCT, label=s.record_label), base="ctx_addr")
        if name == "ret" and s.ret is not None:
            vt = s.ret if isinstance(s.ret, VT) else vt_of(self.btf, s.ret) if s.ret else None
            vt = self._in_space(vt or int_vt("s64"))
            dest = s.local()
            where, access = s.attach.ret_arg(s.nargs)  # registers: PT_REGS_RC; fexit: after args
            s.emit(M.Arg(dest, vt.ctype, where, access.value))
            return Val(vt, var=dest)
        if name in s.params or name in s.declared:
            if name in s.declared:
                index, vt = s.declared[name]
            else:
                index, type_id = s.params[name]
                vt = self._in_space(vt_of(self.btf, type_id))
            dest = s.local()
            if s.attach.max_args and index >= s.attach.max_args:
                raise PlanError(
                    f"argument '{name}' is passed on the stack; not supported", node.col
                )
            if s.attach.stashes:
                slot = f"a{index}"
                s.stash[slot] = index
                s.emit(M.Stashed(dest, vt.ctype, slot))
            else:
                s.emit(M.Arg(dest, vt.ctype, index, s.attach.args.value))
            return Val(vt, var=dest)
        if name in BUILTINS:
            ctype, which = BUILTINS[name]
            dest = s.local()
            s.emit(M.Builtin(dest, ctype, which))
            return Val(int_vt(ctype), var=dest)
        if name in STACKS:
            return self.stack(name, 0)
        if name == "comm":
            return Val(VT(VKind.COMM, COMM_LEN, label="char[16]", char=True))
        if name == FUNC:  # the target that fired: its BPF function's constant (decode: func)
            dest = s.local()
            s.emit(M.Builtin(dest, "u32", FUNC))
            return Val(VT(VKind.INT, 4, label="func", func=True), var=dest)
        if name == "task":  # the current task_struct: task.real_parent.tgid and so on
            task = self.current_task()
            if task is not None:
                return task
        if name == "mntns_id":
            return self.mntns_id(node)
        if name in NS_IDS:
            return self.ns_id(name, node)
        value = self.enum_lookup(name)
        if value is not None:
            return constant_val(fits64(value, node), "enum constant")
        raise PlanError(
            f"unknown name '{name}'; expected {self.expected_names()}"
            f"{did_you_mean(name, self.known_names()) or did_you_mean(name, self.enum_names())}",
            node.col,
        )

    def current_task(self) -> Val | None:
        """The current `struct task_struct *` (bpf_get_current_task), if BTF has the struct."""
        task = self.btf.find("task_struct", Kind.STRUCT)
        if task is None:
            return None
        dest = self.s.local()
        self.s.emit(M.Builtin(dest, "u64", "task"))
        return Val(VT(VKind.PTR, 8, btf=task.id, label="struct task_struct *"), var=dest)

    def mntns_id(self, node: E.Name) -> Val:
        """The current task's mount namespace id, `task->nsproxy->mnt_ns->ns.inum` (what
        `ls -Li /proc/PID/ns/mnt` shows, and bcc's --mntnsmap keys), read at BTF offsets."""
        task = self.current_task()
        val = task
        for attr in MNTNS_PATH:
            if val is None:
                break
            try:
                val = self.member(val, E.Attr(E.Name("task", node.col), attr, node.col))
            except PlanError:
                val = None
        if val is None or val.vt.kind is not VKind.INT:
            raise PlanError(
                "mntns_id: this kernel's BTF has no task_struct.nsproxy.mnt_ns.ns.inum",
                node.col,
            )
        return self.rvalue(val)

    def ns_id(self, name: str, node: E.Name) -> Val:
        """`ns_pid` / `ns_tid`: the current task's pid (its group leader's) or thread id as its
        own pid namespace numbers it, what `getpid()` returns inside a container:
        `pid->numbers[pid->level].nr` (the kernel's pid_vnr), read at BTF offsets."""
        at = E.Name("task", node.col)
        try:
            val = self.current_task()
            if val is None:
                raise PlanError("no task_struct")
            for attr in NS_IDS[name]:
                val = self.member(val, E.Attr(at, attr, node.col))
            pid = self.rvalue(val)
            level = self.rvalue(self.member(pid, E.Attr(at, "level", node.col)))
            numbers = self.member(pid, E.Attr(at, "numbers", node.col))
            upid = vt_of(self.btf, numbers.vt.btf)  # struct upid { int nr; ... }
            nr = self.member(
                Val(upid, base=numbers.base, offset=numbers.offset), E.Attr(at, "nr", 0)
            )
        except PlanError:
            raise PlanError(
                f"{name}: this kernel's BTF has no task_struct.thread_pid.numbers[].nr", node.col
            ) from None
        step, dest = self.s.local(), self.s.local()  # the level's entry: numbers + level * size
        self.s.emit(M.Arith(step, "u64", "*", M.operand(level.var), M.Constant(f"{upid.size}ULL")))
        self.s.emit(M.Add(dest, M.operand(nr.base), M.operand(step)))
        return self.rvalue(Val(nr.vt, base=dest, offset=nr.offset))

    def enum_names(self) -> NameIndex:
        return enum_constant_index(self.btf)

    def known_names(self) -> list[str]:
        s = self.s
        names = list(s.bindings) + list(s.params) + list(s.declared) + list(BUILTINS)
        names += ["comm", "task", "mntns_id", *NS_IDS, *STACKS]
        names.append(FUNC)
        if s.record is not None:
            names.append("args")
        if s.ret is not None:
            names.append("ret")
        return names

    def expected_names(self) -> str:
        s = self.s
        what = []
        if s.params or s.declared:
            what.append("an argument (" + ", ".join([*s.params, *s.declared]) + ")")
        if s.record is not None:
            what.append("args.FIELD")
        if s.ret is not None:
            what.append("ret")
        if s.bindings:
            what.append("a `let` name")
        what.append("a builtin (pid, tid, uid, comm, ...) or an enum constant")
        return ", ".join(what)

    # -- values ------------------------------------------------------------------------------
    def value(self, node: E.Node) -> Val:
        if isinstance(node, E.Name):
            return self.name(node)
        if isinstance(node, E.Num):
            return constant_val(fits64(node.value, node))
        if isinstance(node, E.Attr):
            return self.member(self.value(node.base), node)
        if isinstance(node, E.Index):
            return self.index(self.value(node.base), node)
        if isinstance(node, E.Call):
            return self.call(node)
        if isinstance(node, E.Cast):
            return self.cast(node)
        if isinstance(node, E.BinOp):
            return arith.binop(self, node)
        if isinstance(node, E.Unary):
            return arith.unary(self, node)
        if isinstance(node, (E.Compare, E.BoolOp, E.Not)):
            return self.test(node)
        if isinstance(node, E.IfElse):
            return self.select(node)
        if isinstance(node, E.Str):
            raise PlanError("a string can only be compared with a string field", node.col)
        if isinstance(node, E.Option):
            raise PlanError(f"${node.name} can only be compared with a value", node.col)
        raise PlanError("a list is not a value here", getattr(node, "col", 0))

    def test(self, node: E.Node) -> Val:
        """A comparison as a value: 1 if it holds, else 0, an s32 as C's `a < b` is."""
        _value_only(node)
        cond = self.condition(node, self.leaf, {}, top=False)
        dest = self.s.local()
        self.s.emit(M.Test(dest, cond))
        return Val(int_vt("s32"), var=dest)

    def select(self, node: E.IfElse) -> Val:
        """`a if test else b`: both arms computed, the test picks one, in the type C gives
        `test ? a : b` (the arms' usual arithmetic conversions)."""
        _value_only(node)
        then = arith.operand_val(self, node.then)
        other = arith.operand_val(self, node.other)
        for val, arm in ((then, node.then), (other, node.other)):
            if not val.is_const and val.vt.kind is not VKind.INT:
                raise PlanError(
                    f"the arms of `if ... else` are numbers, not a '{val.vt.label}'",
                    getattr(arm, "col", node.col),
                )
        test = self.value(node.test)
        if test.const is not None and then.const is not None and other.const is not None:
            return constant_val(then.const if test.const else other.const)  # folded
        # a constant test still computes in the arms' type (`-1 if 1 else x_u32` is a u32)
        pick = (
            M.Constant("1" if test.const else "0")
            if test.is_const
            else M.operand(self.number(test, node.test).var)
        )
        if then.is_const and other.is_const:
            ctype = arith.common(
                arith.operand_type(then, node.then), arith.operand_type(other, node.other)
            )
        elif then.is_const or other.is_const:
            var, const = (other, node.other) if then.is_const else (then, node.then)
            ctype = arith.operand_type(var, const)
            fixed = then if then.is_const else other
            ctype = arith.common(ctype, arith.operand_type(fixed, node.then))
        else:
            ctype = arith.common(
                arith.operand_type(then, node.then), arith.operand_type(other, node.other)
            )
        parts = [
            M.Constant(arith.literal(arith.wrap(v.const, ctype), ctype))
            if v.const is not None
            else M.operand(v.var)
            for v in (then, other)
        ]
        dest = self.s.local()
        self.s.emit(M.Select(dest, ctype, pick, parts[0], parts[1]))
        return Val(arith.computed(ctype, then, other), var=dest)

    def member(self, base: Val, node: E.Attr) -> Val:
        s = self.s
        if base.vt.kind is VKind.STATE:
            return self.state().member(base, node)
        if base.vt.label == s.record_label and s.record is not None and base.base == "ctx_addr":
            if node.attr not in s.record:
                raise PlanError(
                    f"tracepoint {s.record_label} has no field '{node.attr}'; "
                    f"fields: {', '.join(s.record) or 'none'}"
                    f"{did_you_mean(node.attr, s.record)}{s.record_note}",
                    node.col,
                )
            offset, vt = s.record[node.attr]
            return Val(vt, base="ctx_addr", offset=offset)
        if base.vt.kind is VKind.PTR:
            if base.vt.user:  # the kernel helpers read it as zeros or garbage, without an error
                raise PlanError(
                    f"a struct behind a user pointer cannot be read: '{node.attr}': a "
                    f"'{base.vt.label}' here points to user memory; only strings (decode: str) "
                    "can be read through it, not structs",
                    node.col,
                )
            if not base.vt.btf or self.btf.strip(base.vt.btf).kind not in (Kind.STRUCT, Kind.UNION):
                raise PlanError(
                    f"'{node.attr}': a '{base.vt.label}' points to no struct; "
                    "cast it first, e.g. `args.skaddr as sock`",
                    node.col,
                )
            base = Val(vt_of(self.btf, base.vt.btf), base=self.rvalue(base).var)
        if base.vt.origins:  # a pointer kept in state reads back as a number
            raise PlanError(
                f"'{node.attr}': a value read from state is a number (a '{base.vt.label}'), "
                "not a pointer to a struct: cast it in a `let` (`p: VALUE as STRUCT`), which "
                "is refused if the state member holds a user-space pointer",
                node.col,
            )
        if base.vt.kind is not VKind.STRUCT or not base.is_lvalue:
            raise PlanError(f"'{node.attr}': a '{base.vt.label}' has no members", node.col)
        hit = self.btf.member(base.vt.btf, node.attr)
        if hit is None:
            names = self.btf.member_names(base.vt.btf)
            raise PlanError(
                f"'{base.vt.label}' has no member '{node.attr}'{did_you_mean(node.attr, names)}",
                node.col,
            )
        vt = vt_of(self.btf, hit.type_id)
        if hit.bitfield_size:
            byte = hit.bit_offset // 8
            return Val(
                VT(VKind.INT, 0, vt.signed, label=f"{vt.label}:{hit.bitfield_size}"),
                base=base.base,
                offset=base.offset + byte,
                bits=(hit.bit_offset % 8, hit.bitfield_size),
            )
        return Val(vt, base=base.base, offset=base.offset + hit.bit_offset // 8)

    def index(self, base: Val, node: E.Index) -> Val:
        if base.vt.kind is VKind.ARRAY and base.is_lvalue:
            if node.index >= base.vt.count:
                raise PlanError(
                    f"index {node.index} is past the end of '{base.vt.label}'", node.col
                )
            elem = vt_of(self.btf, base.vt.btf)
            return Val(elem, base=base.base, offset=base.offset + node.index * elem.size)
        if base.vt.kind is VKind.PTR and base.vt.btf:
            elem = vt_of(self.btf, base.vt.btf)
            if node.index * elem.size > MAX_OFFSET:
                raise PlanError(
                    f"index {node.index} is too large: {node.index} x {elem.size} bytes is past "
                    f"the {MAX_OFFSET}-byte reach of a pointer index",
                    node.col,
                )
            return Val(elem, base=self.rvalue(base).var, offset=node.index * elem.size)
        raise PlanError(f"a '{base.vt.label}' cannot be indexed", node.col)

    def rvalue(self, val: Val) -> Val:
        """Read an lvalue scalar (int, pointer, bitfield) into a local."""
        if not val.is_lvalue:
            return val
        s = self.s
        if val.bits[1]:
            shift, width = val.bits
            size = (shift + width + 7) // 8
            ctype = "s64" if val.vt.signed else "u64"
            dest = s.local()
            base = M.operand(val.base)
            s.emit(M.LoadBits(dest, ctype, base, val.offset, size, shift, (1 << width) - 1))
            return Val(VT(VKind.INT, 8, val.vt.signed, label=val.vt.label), var=dest)
        if val.vt.kind not in (VKind.INT, VKind.PTR) or val.vt.size not in (1, 2, 4, 8):
            raise PlanError(f"a '{val.vt.label}' is not a number or a pointer")
        key = (val.base, val.offset, val.vt.size, val.vt.ctype)
        dest = s.loads.get(key, "")
        if not dest:  # the same memory read twice in one program is read once
            dest = s.loads[key] = s.local()
            # A tracepoint record is the program's own context: an aligned scalar in it is a
            # plain load the verifier checks, not a bpf_probe_read_kernel call.
            direct = val.base == "ctx_addr" and val.offset % val.vt.size == 0
            s.emit(M.Load(dest, val.vt.ctype, M.operand(val.base), val.offset, val.vt.size, direct))
        return Val(val.vt, var=dest)

    def address(self, val: Val) -> str:
        """A local holding the address of an lvalue."""
        if val.offset == 0:
            return val.base
        dest = self.s.local()
        self.s.emit(M.AddrOf(dest, M.operand(val.base), val.offset))
        return dest

    def state(self) -> StateResolver:
        return StateResolver(self, self.s.states)

    def call(self, node: E.Call) -> Val:
        if node.func in strmatch.CALLS:
            raise PlanError(
                f"{node.func}() is a condition on a string field: use it in a probe's filter",
                node.col,
            )
        if node.func in STATE_HELPERS:
            return self.state().call(node)
        if node.func not in HELPERS:
            raise PlanError(
                f"unknown helper '{node.func}'; helpers: {', '.join(HELPERS)}"
                f"{did_you_mean(node.func, HELPERS)}",
                node.col,
            )
        if node.func in STACKS:
            return self.stack(node.func, self.frames(node))
        if node.func.endswith("_header"):
            return self.skb_header(node)
        if node.func in ("sock_saddr", "sock_daddr"):
            if len(node.args) != 1:
                raise PlanError(f"{node.func}(sk) takes one argument", node.col)
            sk = node.args[0]
            common = E.Attr(sk, "__sk_common", node.col)
            names = (
                ("skc_family", "skc_rcv_saddr", "skc_v6_rcv_saddr")
                if node.func == "sock_saddr"
                else ("skc_family", "skc_daddr", "skc_v6_daddr")
            )
            parts = tuple(E.Attr(common, n, node.col) for n in names)
            return self.inet(node, parts)
        if len(node.args) != 3:
            raise PlanError("inet(family, v4_address, v6_address) takes three arguments", node.col)
        return self.inet(node, node.args)

    def stack(self, which: str, frames: int) -> Val:
        """A stack id (engine.runtime.stacks prints its frames); errors are counted in C."""
        dest = self.s.local()
        self.s.emit(M.Builtin(dest, "u64", which))
        return Val(VT(VKind.INT, 8, label=which, stack=which, frames=frames), var=dest)

    def frames(self, node: E.Call) -> int:
        """N of `kstack(N)`: a number from 1 to MAX_FRAMES."""
        args = node.args
        value = self.value(args[0]) if len(args) == 1 else None
        if value is None or not value.is_const or not 1 <= (value.const or 0) <= MAX_FRAMES:
            raise PlanError(
                f"{node.func}(N) takes one number, the most frames to print, 1 to {MAX_FRAMES}"
                f" (or write {node.func} for all)",
                node.col,
            )
        return int(value.const or 0)

    def inet(self, node: E.Call, parts: Sequence[E.Node]) -> Val:
        family = self.rvalue(self.value(parts[0]))
        v4, v6 = self.value(parts[1]), self.value(parts[2])
        for val, size, what in ((v4, 4, "IPv4"), (v6, 16, "IPv6")):
            if not val.is_lvalue or val.vt.size != size:
                raise PlanError(
                    f"the {what} address must be {size} bytes in kernel memory, "
                    f"not a '{val.vt.label}'",
                    node.col,
                )
        return Val(VT(VKind.INET, 18, label="inet address"), parts=(family, v4, v6))

    def skb_header(self, node: E.Call) -> Val:
        if len(node.args) != 1:
            raise PlanError(f"{node.func}(skb) takes one argument", node.col)
        skb = self.value(node.args[0])
        target = self.btf.strip(skb.vt.btf) if skb.vt.kind is VKind.PTR and skb.vt.btf else None
        if target is None or target.name != "sk_buff":
            raise PlanError(
                f"{node.func}() needs a 'struct sk_buff *', got a '{skb.vt.label}'", node.col
            )
        head = self.rvalue(self.member(skb, E.Attr(node.args[0], "head", node.col)))
        off = self.rvalue(self.member(skb, E.Attr(node.args[0], node.func, node.col)))
        dest = self.s.local()
        self.s.emit(M.Add(dest, M.operand(head.var), M.operand(off.var)))
        return Val(VT(VKind.PTR, 8, label="void *"), var=dest)

    def cast(self, node: E.Cast) -> Val:
        val = self.rvalue(self.value(node.expr))
        if val.vt.user:
            raise PlanError(
                f"a struct behind a user pointer cannot be read: a '{val.vt.label}' here points "
                "to user memory; only strings (decode: str) can be read through it, not structs",
                node.expr.col,
            )
        if val.vt.origins:  # read from state: refused if a store puts a user pointer there
            self.s.provenance.casts.append((node, val.vt.origins))
        if val.vt.kind not in (VKind.PTR, VKind.INT) or val.vt.size != 8:
            raise PlanError(
                f"only a pointer can be cast to a kernel type; got a '{val.vt.label}'",
                node.expr.col,
            )
        words = node.type_name.split()
        name = words[-1]
        kinds = {"struct": (Kind.STRUCT,), "union": (Kind.UNION,)}.get(
            words[0], (Kind.STRUCT, Kind.UNION, Kind.TYPEDEF)
        )
        t = self.btf.find(name, *kinds)
        if t is None or self.btf.strip(t.id).kind not in (Kind.STRUCT, Kind.UNION):
            names = name_index(self.btf, "structs", lambda: self.btf.names(Kind.STRUCT, Kind.UNION))
            raise PlanError(
                f"unknown struct or union '{name}'{did_you_mean(name, names)}", node.col
            )
        target = self.btf.strip(t.id)
        label = f"{'union' if target.kind == Kind.UNION else 'struct'} {target.name} *"
        return Val(VT(VKind.PTR, 8, btf=target.id, label=label), var=val.var)

    # -- conditions ----------------------------------------------------------------------------
    def condition(
        self,
        node: E.Node,
        operand: Callable[[E.Node], Val],
        options: dict[str, M.Option],
        top: bool = True,
    ) -> M.CExpr:
        if isinstance(node, E.BoolOp) and node.op == "and":
            return self.conjunction(node, operand, options, top)
        if isinstance(node, E.BoolOp):
            return M.CBool(
                "||", tuple(self.condition(v, operand, options, False) for v in node.values)
            )
        switch = self.switch(node, options)
        if switch is not None:  # a switch not starting an `and`
            opt, _, col = switch
            raise PlanError(
                f"${opt.name} ({_flags(opt)}) alone guards nothing: write `${opt.name} and "
                f"CONDITION` (CONDITION then applies only when {_flags(opt)} is given)"
                if top
                else f"a condition guarded by ${opt.name} ({_flags(opt)}) can only be joined "
                "with `and` (it drops out when the switch is off)",
                col,
            )
        if isinstance(node, E.Not):
            return M.CNot(self.condition(node.operand, operand, options, False))
        if isinstance(node, E.Compare):
            return self.compare(node, operand, options, top)
        if isinstance(node, E.Call) and node.func in strmatch.CALLS:
            return self.string_call(node, operand, options, top)
        val = self.number(operand(node), node)
        return M.CCompare("!=", M.CVar(val.var, val.vt.ctype), M.CNum(0, val.vt.ctype))

    def conjunction(
        self,
        node: E.BoolOp,
        operand: Callable[[E.Node], Val],
        options: dict[str, M.Option],
        top: bool,
    ) -> M.CExpr:
        """`a and b ...`; leading switches (`$flag`, `not $flag`, `($a or $b)`) guard the rest
        of it."""
        values = list(node.values)
        groups: list[list[tuple[M.Option, bool, int]]] = []
        while values and (group := self.guard(values[0], options)) is not None:
            groups.append(group)
            values.pop(0)
        guards = [group[0] for group in groups]  # what errors name
        for v in values:
            late = self.guard(v, options)
            if late is not None:
                name, flags = late[0][0].name, _flags(late[0][0])
                raise PlanError(
                    f"${name} ({flags}) guards the `and` it starts, so it comes first: "
                    f"`${name} and CONDITION`; joined with other conditions, in parentheses: "
                    f"`OTHER and (${name} and CONDITION)`",
                    late[0][2],
                )
        if guards and not top:
            opt, _, col = guards[0]
            raise PlanError(
                f"a condition guarded by ${opt.name} ({_flags(opt)}) can only be joined "
                "with `and` (it drops out when the switch is off)",
                col,
            )
        if not values:  # `$a and $b`: nothing guarded
            opt, _, col = guards[-1]
            raise PlanError(
                f"${opt.name} ({_flags(opt)}) alone guards nothing: write `${opt.name} and "
                f"CONDITION` (CONDITION then applies only when {_flags(opt)} is given)",
                col,
            )
        terms = tuple(self.condition(v, operand, options, top) for v in values)
        out: M.CExpr = terms[0] if len(terms) == 1 and guards else M.CBool("&&", terms)
        for group in reversed(groups):
            out = any_switch(group, out)
        return out

    def guard(
        self, node: E.Node, options: dict[str, M.Option]
    ) -> list[tuple[M.Option, bool, int]] | None:
        """The switches of a guard: `$flag`, `not $flag`, or `($a or not $b ...)` (any one in
        its state applies what it guards); None when `node` is no guard."""
        if isinstance(node, E.BoolOp) and node.op == "or":
            found = [self.switch(v, options) for v in node.values]
            if all(found):
                return [s for s in found if s is not None]
            return None
        one = self.switch(node, options)
        return None if one is None else [one]

    def switch(
        self, node: E.Node, options: dict[str, M.Option]
    ) -> tuple[M.Option, bool, int] | None:
        """(option, on, column) when `node` is `$flag` or `not $flag` for a bool option."""
        on = True
        if isinstance(node, E.Not):
            node, on = node.operand, False
        if not isinstance(node, E.Option):
            return None
        opt = options.get(node.name)
        if opt is None:
            raise PlanError(_unknown_option(node.name, options), node.col)
        if opt.ctype != "bool":
            if not on:
                return None  # `not $value`: a value, refused where it is read
            raise PlanError(
                f"${opt.name} is a {opt.ctype} value, not a switch: compare it, "
                f"as in `FIELD == ${opt.name}`",
                node.col,
            )
        return opt, on, node.col

    def number(self, val: Val, node: E.Node) -> Val:
        if val.vt.kind is VKind.STATE:  # a struct of members: C cannot compare it
            members = self.s.states[val.vt.state].members
            raise PlanError(
                f"a {val.vt.label} has members ({', '.join(members)}) and is no number; "
                f"compare or compute with one of them (`.{members[0]}`)",
                getattr(node, "col", 0),
            )
        if val.vt.kind in (VKind.INET, VKind.COMM, VKind.STR, VKind.ARRAY, VKind.STRUCT):
            raise PlanError(
                f"a '{val.vt.label}' cannot be compared (numbers only, for now)",
                getattr(node, "col", 0),
            )
        return self.rvalue(val)

    def compare(
        self,
        node: E.Compare,
        operand: Callable[[E.Node], Val],
        options: dict[str, M.Option],
        top: bool,
    ) -> M.CExpr:
        if (text := self.substring(node, operand, options, top)) is not None:
            return text
        first = self.comm_local(operand(node.left))
        if first.vt.kind is VKind.STR and first.vt.count:
            return self.string_compare(node, first, options, top)
        if first.vt.kind is VKind.INET:
            return self.inet_compare(node, first, options, top)
        if isinstance(node.right, E.Str):
            raise PlanError(
                f"a string can only be compared with a string field, not a '{first.vt.label}'",
                node.right.col,
            )
        left = self.number(first, node.left)
        if is_constant(left) and not isinstance(node.right, (E.Option, E.ListOf)):
            # `5 < pid`: the constant must fit the other side's type, as on the right
            right = operand(node.right)
            if not is_constant(right):
                rval = self.number(right, node.right)
                value = self.constant(node.left, rval.vt.ctype)
                rvar = M.CVar(rval.var, rval.vt.ctype)
                return M.CCompare(node.op, M.CNum(value, rval.vt.ctype), rvar)
        lvar: M.CExpr = (
            M.CNum(left.const, "u64" if left.const >= 1 << 63 else "s64")
            if left.const is not None
            else M.CVar(left.var, left.vt.ctype)
        )
        ctype = left.vt.ctype
        if isinstance(node.right, E.Option):
            opt = options.get(node.right.name)
            if opt is None:
                raise PlanError(_unknown_option(node.right.name, options), node.right.col)
            if opt.ctype == "bool":
                raise PlanError(
                    f"${opt.name} ({_flags(opt)}) is a switch, not a value: let it guard a "
                    f"condition, `${opt.name} and CONDITION`",
                    node.right.col,
                )
            if opt.ctype in NOT_NUMBER_OPTIONS:
                raise PlanError(NOT_NUMBER_OPTIONS[opt.ctype].format(opt.name), node.right.col)
            if not top:
                raise PlanError(
                    f"a comparison with ${opt.name} can only be joined with `and` "
                    "(it drops out when the option is not given)",
                    node.col,
                )
            if opt.ctype == PINNED:
                return self.pinned_member(node, lvar, opt)
            if opt.is_list != (node.op in ("in", "notin")):
                want = "`in`" if opt.is_list else "==, !=, <, <=, > or >="
                raise PlanError(
                    f"${opt.name} is a {'list' if opt.is_list else 'single value'}; "
                    f"compare it with {want}",
                    node.col,
                )
            placeholder = M.COption(opt.name, opt.ctype, opt.is_list)
            if opt.is_list:
                return M.CIn(lvar, placeholder, negate=node.op == "notin")
            return M.CCompare(node.op, lvar, placeholder)
        if node.op in ("in", "notin"):
            if not isinstance(node.right, E.ListOf) or not node.right.items:
                raise PlanError("`in` needs a list such as [80, 443] or a list option", node.col)
            nums = tuple(M.CNum(self.constant(item, ctype), ctype) for item in node.right.items)
            return M.CIn(lvar, nums, negate=node.op == "notin")
        right = operand(node.right)
        if is_constant(right):
            return M.CCompare(node.op, lvar, M.CNum(self.constant(node.right, ctype), ctype))
        rval = self.number(right, node.right)
        return M.CCompare(node.op, lvar, M.CVar(rval.var, rval.vt.ctype))

    def substring(
        self,
        node: E.Compare,
        operand: Callable[[E.Node], Val],
        options: dict[str, M.Option],
        top: bool,
    ) -> M.CExpr | None:
        """`"ssh" in comm` or `$name in comm` (a string option): a substring match."""
        if node.op in ("in", "notin") and isinstance(node.left, E.Option):
            opt = options.get(node.left.name)
            if opt is None:
                raise PlanError(_unknown_option(node.left.name, options), node.left.col)
            if opt.ctype != "str":
                raise PlanError(
                    f"${opt.name} is a {opt.ctype}: `$OPTION in FIELD` takes a string option "
                    "(a substring of a string field); a value is `FIELD in [..]`",
                    node.left.col,
                )
        if node.op in ("in", "notin") and self.is_text(node.left, options):
            # `"ssh" in comm`, `$name in comm`: a substring
            field = operand(node.right)
            negate = node.op == "notin"
            return self.string_match(node, "contains", field, node.left, options, top, negate)
        return None

    def comm_local(self, val: Val) -> Val:
        """`comm` outside a filter: the task's name read into a local char[16] to compare."""
        if val.vt.kind is not VKind.COMM:
            return val
        dest = self.s.local()
        self.s.emit(M.CommLocal(dest, COMM_LEN))
        vt = VT(VKind.STR, COMM_LEN, count=COMM_LEN, label="char[16]", char=True)
        return Val(vt, var=dest)

    @staticmethod
    def is_text(node: E.Node, options: dict[str, M.Option]) -> bool:
        """A "string" or a string $option."""
        if isinstance(node, E.Str):
            return True
        return isinstance(node, E.Option) and getattr(options.get(node.name), "ctype", "") == "str"

    def pinned_member(self, node: E.Compare, left: M.CExpr, opt: M.Option) -> M.CExpr:
        """`cgroup_id in $cgroupmap`: whether the value, as a u64, is a key of the hash map
        pinned at the option's path (checked when the option is given: engine.kernel.pinned)."""
        if node.op not in ("in", "notin"):
            raise PlanError(
                f"${opt.name} is a pinned map; test membership with `in` or `not in`", node.col
            )
        if not isinstance(left, M.CVar):
            raise PlanError(
                f"a constant is not looked up in ${opt.name}; test a value such as cgroup_id",
                node.left.col if hasattr(node.left, "col") else node.col,
            )
        return M.CIn(left, M.COption(opt.name, PINNED, False), negate=node.op == "notin")

    def string_compare(
        self, node: E.Compare, left: Val, options: dict[str, M.Option], top: bool
    ) -> M.CExpr:
        """`comm == "curl"`: byte compares in C, with the string's bytes as numbers."""
        if node.op not in ("==", "!="):
            raise PlanError(
                'strings compare with == or != (and match with `"x" in FIELD`, '
                "startswith, endswith, glob)",
                node.col,
            )
        return self.string_match(node, "eq", left, node.right, options, top, node.op == "!=")

    def inet_compare(
        self, node: E.Compare, left: Val, options: dict[str, M.Option], top: bool
    ) -> M.CExpr:
        """`daddr == "127.0.0.1"`, `saddr != $laddr`: the family and each address byte."""
        if node.op not in ("==", "!="):
            raise PlanError("addresses compare with == or !=", node.col)
        if not left.var:
            raise PlanError(
                "an address is compared in the filter, on a field that holds it (`decode: inet`)",
                node.col,
            )
        right = node.right
        value: tuple[int, bytes] | M.COption
        if isinstance(right, E.Str):
            try:
                value = inet_value(right.value)
            except ValueError:
                raise PlanError(
                    f"'{right.value}' is not an IPv4 or IPv6 address", right.col
                ) from None
        elif isinstance(right, E.Option):
            opt = options.get(right.name)
            if opt is None:
                raise PlanError(_unknown_option(right.name, options), right.col)
            if opt.ctype != INET_OPTION:
                raise PlanError(
                    f"${opt.name} is a {opt.ctype}, not an address (an option of type: inet)",
                    right.col,
                )
            if not top:
                raise PlanError(
                    f"a comparison with ${opt.name} can only be joined with `and` "
                    "(it drops out when the option is not given)",
                    node.col,
                )
            value = M.COption(opt.name, INET_OPTION, False)
        else:
            raise PlanError(
                'compare an address with an address ("127.0.0.1", "::1") or an inet $option',
                getattr(right, "col", node.col),
            )
        return M.CInetEq(left.var, value, negate=node.op == "!=")

    def string_match(
        self,
        node: E.Node,
        kind: str,
        field: Val,
        pattern: E.Node,
        options: dict[str, M.Option],
        top: bool,
        negate: bool = False,
    ) -> M.CExpr:
        """A string field against a "constant" or a string $option (engine.plan.strmatch)."""
        col = getattr(node, "col", 0)
        field = self.comm_local(field)
        if not (field.vt.kind is VKind.STR and field.vt.count):
            raise PlanError(
                f"{strmatch.WORDS[kind]} match needs a string field of this probe (comm, a "
                f"`decode: str` field), not a '{field.vt.label}'",
                col,
            )
        size = field.vt.count
        value: bytes | M.COption
        if isinstance(pattern, E.Str):
            value = pattern.value.encode()
            problem = strmatch.problem(kind, value, size)
            if problem:
                raise PlanError(problem, pattern.col)
        elif isinstance(pattern, E.Option) and pattern.name in options:
            opt = options[pattern.name]
            if opt.ctype != "str":
                raise PlanError(f"${opt.name} is a {opt.ctype}, not a string", pattern.col)
            if not top:
                raise PlanError(
                    f"a comparison with ${opt.name} can only be joined with `and` "
                    "(it drops out when the option is not given)",
                    col,
                )
            value = M.COption(opt.name, "str", False)
        elif isinstance(pattern, E.Option):
            raise PlanError(_unknown_option(pattern.name, options), pattern.col)
        else:
            raise PlanError(
                'match a string field with a "string" or a string $option',
                getattr(pattern, "col", col),
            )
        return M.CStrEq(field.var, value, size, negate=negate, kind=kind)

    def string_call(
        self,
        node: E.Call,
        operand: Callable[[E.Node], Val],
        options: dict[str, M.Option],
        top: bool,
    ) -> M.CExpr:
        """`startswith(comm, "py")`, `endswith(file, ".so")`, `glob(file, "/usr/*.so")`."""
        if len(node.args) != 2:
            raise PlanError(f'{node.func}(FIELD, "TEXT") takes two arguments', node.col)
        field = operand(node.args[0])
        kind = strmatch.CALLS[node.func]
        return self.string_match(node, kind, field, node.args[1], options, top)

    def constant(self, node: E.Node, ctype: str) -> int:
        if isinstance(node, E.Num):
            value = node.value
        elif isinstance(node, E.Name):
            found = self.enum_lookup(node.name)
            if found is None:
                raise PlanError(
                    f"unknown constant '{node.name}'"
                    f"{did_you_mean(node.name, enum_constant_index(self.btf))}",
                    node.col,
                )
            value = found
        elif isinstance(node, (E.BinOp, E.Unary)) and (folded := self.value(node)).is_const:
            assert folded.const is not None
            value = folded.const  # a constant expression, folded: 1 << 4
        else:
            raise PlanError("expected an integer or an enum constant", getattr(node, "col", 0))
        return fits(value, ctype, node)


def any_switch(group: Sequence[tuple[M.Option, bool, int]], term: M.CExpr) -> M.CExpr:
    """`term` when any switch of `group` is in its state, else true, as CSwitch nodes (each
    binds alone): the first switch's guard, and when it is not in its state the rest's."""
    (opt, on, _), rest = group[0], group[1:]
    first = M.CSwitch(opt.name, on, term)
    if not rest:
        return first
    return M.CBool("&&", (first, M.CSwitch(opt.name, not on, any_switch(rest, term))))


class _Effects(nodes.Visitor[None]):
    """What a value made of comparisons or `if ... else` may not hold: `$options` (a
    comparison with one drops out when it is not given: that is a filter's) and state reads
    that act on every event whichever arm is chosen (both arms are computed)."""

    def visit_Option(self, node: E.Option) -> None:
        raise PlanError(
            f"${node.name} cannot be part of a value: compare it in a filter or `where` "
            "(a comparison with an option drops out when the option is not given)",
            node.col,
        )

    def visit_Call(self, node: E.Call) -> None:
        if node.func == "take" or (node.func == "get" and len(node.args) < 3):
            what = (
                "deletes the key"
                if node.func == "take"
                else "drops the event when the key is missing"
            )
            hint = ", or give get() a default: get(MAP, KEY, DEFAULT)" if node.func == "get" else ""
            raise PlanError(
                f"{node.func}() here would run on every event, whichever way the test goes "
                f"(it {what}): bind it with `let` first{hint}",
                node.col,
            )
        self.generic_visit(node)


def _value_only(node: E.Node) -> None:
    _Effects().visit(node)


def _flags(opt: M.Option) -> str:
    return opt.label


def _unknown_option(name: str, options: dict[str, M.Option]) -> str:
    return (
        f"unknown option ${name}; options: "
        f"{', '.join('$' + o for o in options) or 'none declared'}"
        f"{did_you_mean('$' + name, ['$' + o for o in options])}"
    )
