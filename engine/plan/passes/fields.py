"""Fields: how a resolved value lands in its event slot, and how that slot prints (its
C type, decoder, header and width); every probe and alternative must agree on a field's type."""

from __future__ import annotations

from dataclasses import replace

from engine.decoders import DECODERS
from engine.errors import did_you_mean
from engine.kernel.btf import Btf, Kind
from engine.plan import model as M
from engine.plan.arith import common, promoted
from engine.plan.passes.context import Context
from engine.plan.resolve import COMM_LEN, FUNC, Resolver, name_index
from engine.plan.state import string_field_problem
from engine.plan.values import VT, PlanError, Val, VKind
from engine.spec import expr as E
from engine.spec import model as S

DEFAULT_STR = 64


def field_code(
    ctx: Context, r: Resolver, spec: S.Field, val: Val, node: E.Node
) -> tuple[M.Field, list[M.Step]]:
    """How a value lands in its event slot, and how that slot prints."""
    name, decode = spec.name, spec.decode
    dest = f"ev.{M.slot_name(name)}"
    vt = val.vt
    steps: list[M.Step] = []
    col = getattr(node, "col", 0)
    header = spec.header if spec.header is not None else name.upper()
    enum_pairs: tuple[tuple[int, str], ...] = ()
    if vt.kind is VKind.COMM:
        if decode not in (None, "str"):
            raise PlanError(f"decoder '{decode}' does not fit comm (a string)", col)
        steps.append(M.Comm(dest, COMM_LEN))
        ctype, count, decoder = "char", COMM_LEN, "str"
    elif vt.kind is VKind.INET or decode == "inet":
        steps.append(_inet(dest, val, col))
        ctype, count, decoder = "struct inet_addr", 0, "inet"
    elif (
        vt.kind is VKind.STR or (vt.char and vt.kind in (VKind.ARRAY, VKind.PTR)) or decode == "str"
    ):
        ctype, count, decoder = "char", _string(r, spec, val, node, dest, steps), "str"
    elif vt.kind is VKind.ARRAY:
        if decode not in (None, "hex"):
            raise PlanError(f"decoder '{decode}' does not fit an array ('{vt.label}')", col)
        steps.append(M.Copy(dest, M.operand(val.base), val.offset, vt.size))
        ctype, count, decoder = "u8", vt.size, "hex"
    elif vt.kind in (VKind.INT, VKind.PTR):
        ctype, count, decoder, enum_pairs = _number(ctx, r, spec, val, col, dest, steps)
    elif vt.kind is VKind.STRUCT:
        raise PlanError(
            f"a field can't hold a whole '{vt.label}'; pick a member, e.g. "
            f"'{_first_member(ctx.btf, vt)}'",
            col,
        )
    else:
        raise PlanError(f"a '{vt.label}' can't be a field", col)
    if decoder not in DECODERS:
        raise PlanError(f"unknown decoder '{decoder}'", col)
    natural = DECODERS[decoder].width or count
    if decoder == FUNC:
        natural = max(len(n) for _, n in enum_pairs)
    width = spec.width if spec.width is not None else max(len(header), natural)
    frames = val.vt.frames if val.vt.stack else 0
    return (M.Field(name, ctype, count, decoder, header, width, enum_pairs, frames), steps)


def _inet(dest: str, val: Val, col: int) -> M.Step:
    """An address field: a sock's (family and both addresses), or 4 or 16 bytes of memory."""
    vt = val.vt
    if vt.kind is VKind.INET:
        family, v4, v6 = val.parts
        fam_op, v4_base, v6_base = (M.operand(x) for x in (family.var, v4.base, v6.base))
        return M.Inet(dest, fam_op, v4_base, v4.offset, v6_base, v6.offset)
    if val.is_lvalue and vt.size in (4, 16) and vt.kind in (VKind.INT, VKind.ARRAY):
        fam = "2" if vt.size == 4 else "10"
        base = M.operand(val.base)
        return M.Inet(dest, M.Constant(fam), base, val.offset, base, val.offset)
    raise PlanError(
        f"decoder 'inet' needs an address (4 or 16 bytes in kernel "
        f"memory, or sock_saddr(sk)); got a '{vt.label}'",
        col,
    )


def _string(
    r: Resolver, spec: S.Field, val: Val, node: E.Node, dest: str, steps: list[M.Step]
) -> int:
    """A string field's copy step; returns the bytes it keeps."""
    vt, decode = val.vt, spec.decode
    col = getattr(node, "col", 0)
    size = spec.size if spec.size is not None else (
        vt.count if vt.kind is VKind.ARRAY else DEFAULT_STR
    )  # fmt: skip
    if vt.data_loc:
        steps.append(M.DataLocStr(dest, M.operand(val.base), val.offset, size))
    elif val.var and vt.count:  # a comm or a string kept in a state map: copied whole
        if spec.size is not None and vt.origins:
            said = string_field_problem(r.s.states, vt.origins[0], spec.size)
            if said:
                raise PlanError(said, col)
        size = vt.count
        steps.append(M.CopyLocal(dest, M.member(val.var), size))
    elif vt.kind is VKind.ARRAY and val.is_lvalue:
        steps.append(M.CopyStr(dest, M.operand(r.address(val)), 0, min(size, vt.size)))
        size = min(size, vt.size)
    elif vt.kind is VKind.PTR:
        ptr = r.rvalue(val)
        space = M.read_space(vt.user)
        steps.append(M.CopyStr(dest, M.operand(ptr.var), 0, size, space=space))
    elif vt.kind is VKind.INT and vt.size == 8 and vt.origins and not val.is_const:
        # a pointer kept in state: a user string (the limits pass checks, once every store is
        # known, that its members hold user pointers and no kernel pointer)
        r.s.provenance.strings.append((node, vt.origins))
        ptr = r.rvalue(val)
        steps.append(M.CopyStr(dest, M.operand(ptr.var), 0, size, space=M.read_space(True)))
    else:
        raise PlanError(f"decoder 'str' needs characters; got a '{vt.label}'", col)
    if decode not in (None, "str"):
        raise PlanError(f"decoder '{decode}' does not fit a string", col)
    return size


def _number(
    ctx: Context, r: Resolver, spec: S.Field, val: Val, col: int, dest: str, steps: list[M.Step]
) -> tuple[str, int, str, tuple[tuple[int, str], ...]]:
    """An integer or pointer field: (C type, count, decoder, enum values)."""
    vt, decode = val.vt, spec.decode
    enum_pairs: tuple[tuple[int, str], ...] = ()
    rv = r.rvalue(val)
    if rv.is_const:
        raise PlanError("a field needs a kernel value, not a constant", col)
    ctype, count = rv.vt.ctype, 0
    swap = 0
    decoder = decode or ("hex" if vt.kind is VKind.PTR else "int")
    if decode in ("be16", "be32", "be64"):
        bits = int(decode[2:])
        if rv.vt.size * 8 != bits:
            raise PlanError(
                f"decoder '{decode}' needs a {bits // 8}-byte integer; "
                f"this is a '{vt.label}' ({rv.vt.size} bytes)",
                col,
            )
        swap, decoder = bits, "int"
    if vt.stack:  # a stack id: printed as its frames (engine.runtime.stacks)
        if decode not in (None, vt.stack):
            raise PlanError(f"decoder '{decode}' does not fit a stack ({vt.stack})", col)
        decoder = vt.stack
    elif vt.func and decode is None:  # the target that fired, by name (the plan's table)
        decoder, enum_pairs = FUNC, tuple(enumerate(ctx.func_names))
    elif decoder == "enum" or (decode is None and vt.btf and vt.kind is VKind.INT):
        enum_pairs = enum_values(ctx, spec.enum, vt, col)
        decoder = "enum"
    if decoder == "ksym" and rv.vt.size != 8:
        raise PlanError("decoder 'ksym' needs a kernel address (8 bytes)", col)
    if decoder in ("elapsed", "ms", "secs") and rv.vt.size != 8:
        raise PlanError(f"decoder '{decoder}' needs nanoseconds (a u64 such as ktime_ns)", col)
    steps.append(M.Store(dest, M.operand(rv.var), swap))
    return ctype, count, decoder, enum_pairs


def enum_values(ctx: Context, enum_name: str, vt: VT, col: int) -> tuple[tuple[int, str], ...]:
    if enum_name:
        t = ctx.btf.find(enum_name, Kind.ENUM, Kind.ENUM64)
        if t is None:
            hit = ctx.btf.enum_constant(enum_name)
            if hit is None:
                btf = ctx.btf
                names = name_index(btf, "enums", lambda: btf.names(Kind.ENUM, Kind.ENUM64))
                raise PlanError(
                    f"no enum '{enum_name}' (nor an enum constant of that name)"
                    f"{did_you_mean(enum_name, names)}",
                    col,
                )
            t = hit[0]
    elif vt.btf:
        t = ctx.btf.type(vt.btf)
    else:
        raise PlanError("decoder 'enum' needs an enum: `decode: {enum: NAME}`", col)
    return tuple((e.value, e.name) for e in t.enumerators)


def merge_field(ctx: Context, fields: dict[str, M.Field], f: M.Field, at: S.At) -> None:
    old = fields.get(f.name)
    if old is None:
        fields[f.name] = f
    elif (old.ctype, old.count, old.decoder) == (f.ctype, f.count, f.decoder):
        return
    elif _plain_int(old) and _plain_int(f):
        # mount's `u64 flags` and umount's `int flags`: one slot of C's common type (the
        # usual arithmetic conversions of the promoted types), each probe's value converted
        # into it as C assigns
        fields[f.name] = replace(old, ctype=common(promoted(old.ctype), promoted(f.ctype)))
    else:
        ctx.problem(
            f"field '{f.name}' is a {f.ctype}{f'[{f.count}]' if f.count else ''} "
            f"({f.decoder}) here but a {old.ctype}"
            f"{f'[{old.count}]' if old.count else ''} ({old.decoder}) elsewhere; "
            "every alternative and probe must give it the same type",
            at,
        )


def _plain_int(f: M.Field) -> bool:
    """An integer printed as a number (no array, no decoder tied to its size or meaning)."""
    return f.count == 0 and f.decoder == "int" and f.ctype[:1] in ("u", "s")


def _first_member(btf: Btf, vt: VT) -> str:
    names = btf.member_names(vt.btf)
    return names[0] if names else "a member"
