"""A small C program the user-space probe tests build with gcc: functions with known call
counts (work_a, work_b, work_c, and `other`, which no pattern of the tests matches) and libc
usleep() calls of a known length, made once the test says "go" on stdin.

    prog N_A N_B N_C SLEEP_US N_SLEEPS
prints its pid, waits for a line, makes the calls, prints "done ACC NS NS ..." (each usleep's
length in nanoseconds as the program itself timed it, CLOCK_MONOTONIC around the call), and
exits at the next line (so that bpftrace, which names user functions from the live process, can
print first).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

__attribute__((noinline)) int work_a(int x) { __asm__ volatile("" ::: "memory"); return x + 1; }
__attribute__((noinline)) int work_b(int x) { __asm__ volatile("" ::: "memory"); return x + 2; }
__attribute__((noinline)) int work_c(int x) { __asm__ volatile("" ::: "memory"); return x + 3; }
__attribute__((noinline)) int other(int x) { __asm__ volatile("" ::: "memory"); return x - 1; }

int main(int argc, char **argv)
{
    char line[16];
    volatile int acc = 0;
    if (argc != 6)
        return 2;
    int na = atoi(argv[1]), nb = atoi(argv[2]), nc = atoi(argv[3]);
    int us = atoi(argv[4]), sleeps = atoi(argv[5]);
    printf("%d\n", (int)getpid());
    fflush(stdout);
    if (!fgets(line, sizeof line, stdin))
        return 1;
    for (int i = 0; i < na; i++)
        acc += work_a(i);
    for (int i = 0; i < nb; i++)
        acc += work_b(i);
    for (int i = 0; i < nc; i++)
        acc += work_c(i);
    long long *took = calloc(sleeps > 0 ? sleeps : 1, sizeof *took);
    if (!took)
        return 1;
    for (int i = 0; i < sleeps; i++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        usleep(us);
        clock_gettime(CLOCK_MONOTONIC, &b);
        took[i] = (b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec);
    }
    acc = other(acc);
    printf("done %d", acc);
    for (int i = 0; i < sleeps; i++)
        printf(" %lld", took[i]);
    printf("\n");
    fflush(stdout);
    /* held until told to exit: bpftrace names a user function (func, usym) from the live
       process's maps when it prints, after the run */
    if (!fgets(line, sizeof line, stdin))
        return 1;
    return 0;
}
"""


def build(folder: Path, name: str = "prog") -> Path:
    """Compile the program into `folder` (symbols kept: .symtab names work_a...)."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc is missing: scripts/setup.sh installs it")
    src = folder / f"{name}.c"
    src.write_text(SOURCE)
    out = folder / name
    subprocess.run([gcc, "-O1", "-o", str(out), str(src)], check=True, timeout=120)
    return out


def printed(oracle: Any, kind: str) -> list[dict]:
    """The JSON records bpftrace printed up to its first `kind` record ("map", "hist"), which
    the script prints when the program calls other(), after everything counted; then bpftrace
    is killed. Its maps are not read at exit: on this kernel (6.18) bpftrace 0.17 was seen,
    now and then, taking over 120 s after SIGINT to exit after uprobes (detaching them waits
    for RCU grace periods), and the results are in by then anyway."""
    oracle.wait_line(lambda line: f'"type": "{kind}"' in line)
    records = [json.loads(line) for line in oracle.out.lines if line.startswith("{")]
    oracle.kill()
    return records
