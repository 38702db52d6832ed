"""Write the golden files: `python -m tests.golden.regenerate` (or `make golden`).

For each spec in specs/, each attach alternative (the N-th of every probe) and each output
mode, the rendered BPF C goes to tests/golden/<spec>.<N>.<mode>.c, and the spec's decoder to
tests/golden/<spec>.decoder.py. Specs are planned against the committed BTF fixture
(tests/fixtures/btf/, a 6.18 kernel's BTF), not the running kernel's, so the golden files
mean the same on every machine. Review the diff of a regeneration before committing it.
"""

from __future__ import annotations

import pathlib
import sys
from typing import Any, Iterator

from tests.live_specs import offline

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SPECS = ROOT / "specs"
FIXTURE = ROOT / "tests" / "fixtures" / "btf" / "linux-6.18.44-fc.btf.xz"

# Option values rendered into the goldens: the tracing tools' typical filters, so the
# constants, the `in` expansion and the byte order of ports show in review.
OPTIONS: dict[str, dict[str, Any]] = {
    "tcpconnect": {"pid": 1234, "port": [80, 443]},
}


def plan_spec(path: pathlib.Path, btf: str | None = str(FIXTURE)) -> Any:
    from engine import pipeline

    return pipeline.check(str(path), btf).plan


def renders(btf: str | None = str(FIXTURE)) -> Iterator[tuple[str, str]]:
    """(golden file name, its fresh text) for every spec, alternative and mode;
    `btf=None` plans against the running kernel instead of the fixture."""
    from engine.codegen import render
    from engine.plan.bind import bind

    for path in offline(sorted(SPECS.glob("*.yaml"))):  # `# live:` specs need tracefs
        plan = plan_spec(path, btf)
        yield f"{plan.name}.decoder.py", render.render_decoder(plan)
        width = max(len(p.alternatives) for p in plan.probes)
        for n in range(width):
            choices = {p.name: min(n, len(p.alternatives) - 1) for p in plan.probes}
            for count in (False, True) if plan.counted else (False,):
                program = bind(
                    plan, count=count, options=OPTIONS.get(plan.name, {}), choices=choices
                )
                yield f"{plan.name}.{n + 1}.{program.label}.c", render.render_c(program)


def golden_files() -> list[pathlib.Path]:
    return sorted(p for p in HERE.iterdir() if p.name.endswith((".c", ".decoder.py")))


def main() -> int:
    fresh = dict(renders())
    for old in golden_files():
        if old.name not in fresh:
            old.unlink()
            print(f"removed {old.relative_to(ROOT)}")
    for name, text in fresh.items():
        target = HERE / name
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
            print(f"wrote {target.relative_to(ROOT)}")
    print(f"{len(fresh)} golden files, planned against {FIXTURE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
