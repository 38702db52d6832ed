"""`specs/biopattern.yaml` against a bpftrace script with bcc's biopattern logic, on a loop
device, at the same time: SEQ sequential 4 KiB direct writes (one run, each starting where
the last ended), then RND direct reads at scattered offsets. Exact: the sequential and random
counts, the bytes, and the percentages bcc's integer arithmetic gives for them; `-d` keeps
another device out. The first request of the run only sets where the disk's last one ended,
as in bcc."""

from __future__ import annotations

import pytest
from oracle import BpftraceJson
from test_spec_bio import dd, loopdev  # noqa: F401  (the loop device fixture)

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_env")]

SEQ, RND = 30, 9
SCRIPT = """
BEGIN { printf("READY\\n"); }
tracepoint:block:block_rq_complete /args->dev == (uint32)%d/ {
  if (@last[args->dev]) {
    if (@last[args->dev] == args->sector) { @seq = count(); } else { @rnd = count(); }
    @bytes = sum(args->nr_sector * 512);
  }
  @last[args->dev] = args->sector + args->nr_sector;
}
END { clear(@last); }
"""


def workload(path: str) -> None:
    dd("if=/dev/zero", f"of={path}", "oflag=direct", "bs=4096", f"count={SEQ}", "seek=64")
    for i in range(RND):  # far apart and out of order: none starts where another ended
        dd(
            f"if={path}",
            "of=/dev/null",
            "iflag=direct",
            "bs=4096",
            "count=1",
            f"skip={(i * 7 + 3) % 11 * 300}",
        )


def test_counts_and_percentages_match_bpftrace(engine, loopdev) -> None:  # noqa: F811
    path, dev = loopdev
    oracle = BpftraceJson(SCRIPT % dev)
    try:
        ours = engine("specs/biopattern.yaml", "-d", str(dev), "-o", "json")
        table = engine("specs/biopattern.yaml", "-d", str(dev))
        workload(path)
        result, shown = ours.stop(), table.stop()
        theirs = {
            name.lstrip("@"): value
            for r in oracle.stop()
            if r.get("type") == "map"
            for name, value in r["data"].items()
        }
    finally:
        oracle.kill()
    assert result.code == 0, result.stderr
    assert shown.code == 0, shown.stderr
    [row] = result.json_rows()
    seq, rnd, total = theirs.get("seq", 0), theirs.get("rnd", 0), theirs["seq"] + theirs["rnd"]
    assert (seq, rnd) == (SEQ - 1, RND)  # the writes' first one only sets the start
    assert row == {
        "disk": f"{dev >> 20}:{dev & 0xFFFFF}",
        "%rnd": rnd * 100 // total,
        "%seq": seq * 100 // total,
        "count": total,
        "kbytes": theirs["bytes"] // 1024,
    }
    assert shown.out_lines[-2].split() == ["DISK", "%RND", "%SEQ", "COUNT", "KBYTES"]
    assert shown.out_lines[-1].split() == [str(v) for v in row.values()]
