"""An independent reader of a BTF file, for checking what the engine says about it: bpftool.

`bpftool btf dump file F -j` is libbpf's decode of every type; this module only walks that
JSON (offsets, sizes, anonymous members), sharing no code with engine.kernel.btf, so a test
comparing the two catches a mistake in either. .xz files (the committed fixture) are
decompressed to a temporary file first, as bpftool reads raw BTF only.
"""

from __future__ import annotations

import functools
import json
import lzma
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

MODIFIERS = {"TYPEDEF", "CONST", "VOLATILE", "RESTRICT", "TYPE_TAG"}


def bpftool() -> str:
    """bpftool's path, or skip: without it there is no independent reference here."""
    found = shutil.which("bpftool") or next(
        (p for p in ("/usr/sbin/bpftool", "/sbin/bpftool") if Path(p).exists()), None
    )
    if found is None:
        pytest.skip("bpftool is not installed (apt install bpftool): no reference to compare")
    return found


class Reference:
    """bpftool's raw dump of one BTF file, with the few walks tests need."""

    def __init__(self, path: str) -> None:
        raw = Path(path).read_bytes()
        with tempfile.TemporaryDirectory() as tmp:
            target = Path(path)
            if raw[:6] == b"\xfd7zXZ\x00":
                target = Path(tmp) / "btf"
                target.write_bytes(lzma.decompress(raw))
            out = subprocess.run(
                [bpftool(), "btf", "dump", "file", str(target), "-j"],
                capture_output=True, text=True, check=True, timeout=120,
            )  # fmt: skip
        types = json.loads(out.stdout)["types"]
        self.by_id: dict[int, dict[str, Any]] = {t["id"]: t for t in types}
        self.by_name: dict[tuple[str, str], dict[str, Any]] = {}
        for t in types:
            self.by_name.setdefault((t["kind"], t.get("name", "")), t)

    def named(self, kind: str, name: str) -> dict[str, Any]:
        return self.by_name[(kind, name)]

    def strip(self, tid: int) -> dict[str, Any]:
        t = self.by_id.get(tid, {"kind": "VOID", "id": 0})
        while t["kind"] in MODIFIERS:
            t = self.by_id.get(t["type_id"], {"kind": "VOID", "id": 0})
        return t

    def sizeof(self, tid: int) -> int:
        t = self.strip(tid)
        if t["kind"] == "PTR":
            return 8
        if t["kind"] == "ARRAY":
            return int(t["nr_elems"]) * self.sizeof(t["type_id"])
        return int(t.get("size", 0))

    def flat_members(self, kind: str, name: str) -> list[tuple[int, str, str]]:
        """(byte offset, size text, name) of every member, anonymous members flattened, as
        `engine explain struct NAME` lists them: size text is bytes, or `bits A:B`."""
        out: list[tuple[int, str, str]] = []

        def walk(t: dict[str, Any], base: int) -> None:
            for m in t["members"]:
                bits = base + m["bits_offset"]
                inner = self.strip(m["type_id"])
                if m["name"] == "(anon)" and inner["kind"] in ("STRUCT", "UNION"):
                    walk(inner, bits)
                    continue
                width = m.get("bitfield_size", 0)
                size = (
                    f"bits {bits % 8}:{bits % 8 + width}"
                    if width
                    else str(self.sizeof(m["type_id"]))
                )
                out.append((bits // 8, size, m["name"]))

        walk(self.named(kind, name), 0)
        return out

    def record_fields(self, struct: str) -> list[tuple[int, int, str]]:
        """(offset, size, field) of a trace_event_raw_* record as a spec names them."""
        out = []
        for m in self.named("STRUCT", struct)["members"]:
            if m["name"] in ("ent", "__data", "(anon)"):
                continue
            name = m["name"].removeprefix("__data_loc_")
            out.append((m["bits_offset"] // 8, self.sizeof(m["type_id"]), name))
        return out

    def params(self, func: str) -> list[tuple[str, int]]:
        """(name, size) of a kernel function's arguments."""
        proto = self.by_id[self.named("FUNC", func)["type_id"]]
        return [(p["name"], self.sizeof(p["type_id"])) for p in proto["params"]]

    def enum_values(self, constant: str) -> dict[str, int]:
        """Every constant of the enum that holds `constant`."""
        for t in self.by_id.values():
            if t["kind"] in ("ENUM", "ENUM64"):
                values = {v["name"]: int(v["val"]) for v in t["values"]}
                if constant in values:
                    return values
        raise KeyError(constant)


@functools.lru_cache(maxsize=4)
def reference(path: str) -> Reference:
    return Reference(path)
