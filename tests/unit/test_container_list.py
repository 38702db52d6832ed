"""engine.kernel.containers and engine.runtime.scope without a runtime: podman's JSON as it
prints it, which containers --container/--pod pick, the messages when they pick none, and how
the kernel's cgroup array slots are filled and freed as containers come and go. The real
containers are in tests/kernel/test_containers.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from engine.kernel import containers as ct
from engine.runtime.scope import ContainerScope

ID_A = "9c5955c9a98b3bddd66fafa2783c4b157dcfca933e12bf5faa6a9687f3a83891"
ID_B = "1f0e" + "0" * 60


def container(
    cid: str, name: str, pod: str = "", in_pod: str = "", cgroup: str = ""
) -> ct.Container:
    labels = {}
    if pod:
        namespace, pod_name = pod.split("/")
        labels = {ct.POD_NAMESPACE: namespace, ct.POD_NAME: pod_name, ct.POD_CONTAINER: in_pod}
    return ct.Container(
        cid, name, "localhost/img:1", cgroup or f"/libpod_parent/libpod-{cid}", labels
    )


A = container(ID_A, "web", "shop/web-1", "app")
B = container(ID_B, "db", "shop/db-0", "db")


def listing(*found: ct.Container, **failed: str) -> ct.Listing:
    return ct.Listing(list(found), failed)


def test_podman_json_becomes_containers(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [
        {"Id": ID_A, "Names": ["web"], "Image": "localhost/img:1", "Pid": os.getpid(),
         "Labels": {ct.POD_NAME: "web-1", ct.POD_NAMESPACE: "shop"}},
        {"Id": ID_B, "Names": ["gone"], "Image": "x", "Pid": 0, "Labels": None},
    ]  # fmt: skip
    monkeypatch.setattr(ct, "task_cgroup", lambda pid: "/libpod_parent/libpod-a" if pid else "")
    (found,) = ct.podman_containers(run=lambda argv: json.dumps(rows))
    assert (found.id, found.name, found.image, found.cgroup, found.pod) == (
        ID_A, "web", "localhost/img:1", "/libpod_parent/libpod-a", "shop/web-1"
    )  # fmt: skip
    assert found.short_id == ID_A[:12]
    assert ct.podman_containers(run=lambda argv: "") == []
    with pytest.raises(ct.SourceError, match="`podman ps` printed no JSON: 'not json'"):
        ct.podman_containers(run=lambda argv: "not json")


def test_task_cgroup_reads_the_unified_line(tmp_path: Path) -> None:
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "cgroup").write_text("12:pids:/x\n0::/libpod_parent/libpod-abc\n")
    assert ct.task_cgroup(7, proc=str(tmp_path)) == "/libpod_parent/libpod-abc"
    assert ct.task_cgroup(8, proc=str(tmp_path)) == ""


def test_selectors_pick_by_name_id_prefix_and_pod() -> None:
    found = listing(A, B)
    assert ct.select([ct.Selector("--container", "web")], found) == [A]
    assert ct.select([ct.Selector("--container", ID_B[:4])], found) == [B]
    assert ct.select([ct.Selector("--pod", "shop/db-0")], found) == [B]
    both = [ct.Selector("--container", "web"), ct.Selector("--pod", "shop/web-1")]
    assert ct.select(both, found) == [A]  # each container once


def test_a_selector_that_picks_nothing_lists_what_runs() -> None:
    with pytest.raises(ct.ContainerError) as exc:
        ct.select([ct.Selector("--container", "wbe")], listing(A, B))
    assert str(exc.value) == (
        "--container wbe: matches nothing (running containers: db, web); did you mean 'web'?"
    )
    with pytest.raises(ct.ContainerError) as exc:
        ct.select([ct.Selector("--pod", "shop/web-2")], listing(A, B))
    assert str(exc.value).startswith(
        "--pod shop/web-2: matches nothing (running pods: shop/db-0, shop/web-1); did you mean"
    )
    with pytest.raises(ct.ContainerError, match=r"\(no containers are running\)$"):
        ct.select([ct.Selector("--container", "web")], listing())
    with pytest.raises(ct.ContainerError):  # an id prefix needs 3 characters
        ct.select([ct.Selector("--container", ID_A[:2])], listing(A))


def test_container_ids_in_cgroup_paths() -> None:
    assert ct.container_id_in(f"/libpod_parent/libpod-{ID_A}") == ID_A
    assert ct.container_id_in(f"/system.slice/docker-{ID_A}.scope") == ID_A
    assert ct.container_id_in(f"/kubepods/burstable/pod1/cri-containerd-{ID_A}.scope") == ID_A
    assert ct.container_id_in(f"/kubepods.slice/crio-{ID_A}.scope/init") == ID_A
    assert ct.container_id_in("/system.slice/ssh.service") == ""
    assert ct.container_id_in("/") == ""


def test_the_watch_names_a_cgroup_or_one_below_it() -> None:
    lists = [listing(A), listing(A, B)]
    watch = ct.Watch(source=lambda: lists.pop(0), cgroup2=[])
    seen: list[list[ct.Container]] = []
    watch.on_list.append(seen.append)
    watch.list_now()
    assert watch.container(A.cgroup) is A
    assert watch.container(A.cgroup + "/sub/deeper") is A
    assert watch.container(B.cgroup) is None
    watch.list_now()
    assert watch.container(B.cgroup) is B
    assert seen == [[A], [A, B]] and watch.lists == 2


class Table(dict):
    """A stand-in for bcc's CgroupArray: slot -> path."""


def test_scope_fills_free_slots_and_frees_gone_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dirs = {c.cgroup: tmp_path / c.name for c in (A, B)}
    for d in dirs.values():
        d.mkdir()
    monkeypatch.setattr(
        "engine.kernel.cgroups.resolve",
        lambda text: type("C", (), {"path": str(dirs[text])})(),
    )
    table, said = Table(), []
    scope = ContainerScope(
        table, 2, [str(dirs[A.cgroup])], [ct.Selector("--pod", "shop/db-0")], said.append
    )
    scope.update([A, B])
    assert table == {1: str(dirs[B.cgroup])}
    assert said == [f"tracing container db ({ID_B[:12]}, pod shop/db-0) from now on"]
    scope.update([A, B])  # listed again: nothing new
    assert len(said) == 1
    other = container("2" * 64, "db2", "shop/db-0", "db")
    dirs[other.cgroup] = tmp_path / "db2"
    dirs[other.cgroup].mkdir()
    scope.update([A, B, other])  # no slot left: said once
    scope.update([A, B, other])
    assert said[1:] == [f"container db2 ({'2' * 12}) not traced: all 2 cgroup slots are in use"]
    assert scope.full == 1
    dirs[B.cgroup].rmdir()  # B stopped: its slot is freed, then taken by the one waiting
    scope.update([A, other])
    assert table == {1: str(dirs[other.cgroup])}


def test_a_label_selector_needs_every_pair() -> None:
    both = ct.Selector("--selector", f"{ct.POD_NAMESPACE}=shop,{ct.POD_CONTAINER}=db")
    assert ct.select([both], listing(A, B)) == [B]
    with pytest.raises(ct.ContainerError) as exc:
        ct.select([ct.Selector("--selector", f"{ct.POD_CONTAINER}=dbb")], listing(A, B))
    assert str(exc.value).startswith("--selector io.kubernetes.container.name=dbb: matches")
    assert str(exc.value).endswith("did you mean 'io.kubernetes.container.name=db'?")


def test_containerd_tasks_become_containers(monkeypatch: pytest.MonkeyPatch) -> None:
    """`ctr` as it prints: namespaces, a task table (a stopped task left out), container info
    JSON read once per container; a kubelet container (64-digit id) named by its label."""
    info = {
        "Labels": {ct.POD_NAME: "web-1", ct.POD_NAMESPACE: "shop", ct.POD_CONTAINER: "app"},
        "Image": "registry.k8s.io/pause:3.9",
    }
    calls: list[list[str]] = []

    def ctr(argv: list[str]) -> str:
        calls.append(argv)
        verb = argv[3:] if argv[3] != "--namespace" else argv[5:]
        if verb[:2] == ["namespaces", "list"]:
            return "k8s.io\nmoby\n"
        if verb[:2] == ["task", "list"]:
            if argv[4] == "moby":
                return "TASK    PID    STATUS\n"
            return f"TASK PID STATUS\n{ID_A} 4242 RUNNING\nold 17 STOPPED\nmine 4343 RUNNING\n"
        return json.dumps(info) if verb[2] == ID_A else json.dumps({"Labels": None})

    monkeypatch.setattr(ct, "task_cgroup", lambda pid: f"/k8s.io/{pid}")
    monkeypatch.setattr(ct, "_INFO", {})
    first = ct.containerd_containers(run=ctr)
    assert [(c.id, c.name, c.image, c.cgroup, c.pod) for c in first] == [
        (ID_A, "app", "registry.k8s.io/pause:3.9", "/k8s.io/4242", "shop/web-1"),
        ("mine", "mine", "", "/k8s.io/4343", ""),
    ]
    infos = sum(1 for argv in calls if argv[-2] == "info")
    assert ct.containerd_containers(run=ctr) == first
    assert sum(1 for argv in calls if argv[-2] == "info") == infos == 2  # labels read once


def test_a_failing_source_leaves_the_others_and_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> list[ct.Container]:
        raise KeyError("Pid")

    def half() -> list[ct.Container]:  # a CRI socket answered, another did not
        raise ct.SourceError("/run/crio/crio.sock: ListContainers: UNAVAILABLE: no", [B])

    monkeypatch.setattr(ct, "SOURCES", {"broken": broken, "fine": lambda: [A], "half": half})
    assert ct.running() == listing(
        A, B, broken="KeyError: 'Pid'", half="/run/crio/crio.sock: ListContainers: UNAVAILABLE: no"
    )


def test_a_container_two_sources_list_is_taken_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """containerd's kubelet containers come through CRI and through ctr alike."""
    other = ct.Container(ID_A, "from-ctr", "x", A.cgroup, {})
    monkeypatch.setattr(ct, "SOURCES", {"cri": lambda: [A], "containerd": lambda: [other, B]})
    assert ct.running().containers == [A, B]


def test_a_failed_runtime_is_said_where_nothing_matched() -> None:
    """Not "no containers are running" when podman could not say which run."""
    failed = listing(podman="`podman ps` exited 125: Error: database is locked")
    with pytest.raises(ct.ContainerError) as exc:
        ct.select([ct.Selector("--container", "web")], failed)
    assert str(exc.value) == (
        "--container web: matches nothing (no containers are running; failed to list: podman)"
    )


def test_the_watch_counts_failures_by_source_and_says_each_once() -> None:
    """Counted at every listing; said when it starts, changes, or ends, not every second."""
    lists = [
        listing(A),
        listing(A, cri="down"),
        listing(A, cri="down"),
        listing(A),
        listing(cri="down", podman="exit 1"),
    ]
    said: list[str] = []
    watch = ct.Watch(source=lambda: lists.pop(0), cgroup2=[], say=said.append)
    for _ in range(5):
        watch.list_now()
    assert watch.failed == {"cri": 3, "podman": 1} and watch.failures == 4
    assert watch.failure == "cri: down; podman: exit 1"
    assert watch.last == [] and watch.listing.failed == {"cri": "down", "podman": "exit 1"}
    assert said == [
        "engine: listing containers failed: cri: down",
        "engine: listing containers: every runtime answers again",
        "engine: listing containers failed: cri: down; podman: exit 1",
    ]


def test_a_runtime_client_that_fails_says_how(tmp_path: Path) -> None:
    """_output's errors: the client's exit status and first line of stderr, or why it did not
    run (a real process each)."""
    with pytest.raises(ct.SourceError, match=r"^`sh` exited 3: first$"):
        ct._output(["sh", "-c", "echo; echo first >&2; echo second >&2; exit 3"])
    with pytest.raises(ct.SourceError, match="No such file"):
        ct._output([str(tmp_path / "no-such-client"), "ps"])
    assert ct._output(["sh", "-c", "echo ok"]) == "ok\n"


def test_what_a_selector_that_picks_nothing_says_there_is() -> None:
    bare = ct.Container(ID_A, "plain", "img", "/x", {})
    for flag, value, found, said in [
        ("--selector", "a=b", listing(), "no running container has labels"),
        ("--selector", "a=b", listing(bare), "no running container has labels"),
        ("--pod", "shop/x", listing(bare), "no pods are running"),
        ("--selector", "a=b", listing(A), "labels of running containers: io.kubernetes."),
    ]:
        with pytest.raises(ct.ContainerError) as exc:
            ct.select([ct.Selector(flag, value)], found)
        assert str(exc.value).startswith(f"{flag} {value}: matches nothing ({said}"), exc.value
