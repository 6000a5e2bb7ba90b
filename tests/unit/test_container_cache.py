"""ContainerCache with fake readers and a fake clock: grace period, fallbacks, resolution."""

from __future__ import annotations

import pytest

from sigtrace.containers.cache import ContainerCache
from sigtrace.containers.cgroup_path import ContainerRef
from sigtrace.containers.records import RuntimeContainer
from sigtrace.errors import ContainerNotFound, RuntimeAbsent, RuntimeUnavailable

WEB = "abc1" + "0" * 60
WORKER = "abc2" + "1" * 60
DB = "cd56" + "2" * 60
POD = "ef78" + "3" * 60


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeReader:
    """A runtime that knows some containers; `up=False` makes it fail like a dead socket."""

    def __init__(self, runtime: str, containers: list[RuntimeContainer], up: bool = True) -> None:
        self.runtime = runtime
        self.containers = {c.id: c for c in containers}
        self.up = up
        self.inspected: list[str] = []
        self.listed = 0

    def inspect(self, cid: str) -> RuntimeContainer:
        self.inspected.append(cid)
        if not self.up:
            raise RuntimeUnavailable(f"{self.runtime}: socket absent")
        if cid not in self.containers:
            raise ContainerNotFound(f"no {self.runtime} container {cid}")
        return self.containers[cid]

    def list_containers(self) -> list[RuntimeContainer]:
        self.listed += 1
        if not self.up:
            raise RuntimeUnavailable(f"{self.runtime}: socket absent")
        # a listing lacks the pid, as Docker's does
        return [
            RuntimeContainer(id=c.id, name=c.name, runtime=c.runtime)
            for c in self.containers.values()
        ]


def docker_reader(up: bool = True) -> FakeReader:
    return FakeReader(
        "docker",
        [
            RuntimeContainer(id=WEB, name="web", pid=101, stop_signal="SIGQUIT"),
            RuntimeContainer(id=WORKER, name="worker", pid=102),
        ],
        up,
    )


def containerd_reader(up: bool = True) -> FakeReader:
    return FakeReader(
        "containerd",
        [
            RuntimeContainer(id=DB, name="db", runtime="containerd", pid=201),
            RuntimeContainer(id=POD, name="web", runtime="containerd", pid=202),
        ],
        up,
    )


# get(): enrichment


def test_hit_is_cached() -> None:
    docker = docker_reader()
    cache = ContainerCache([docker], clock=FakeClock())
    assert cache.get(WEB, "docker").name == "web"
    assert cache.get(WEB, "docker").pid == 101
    assert docker.inspected == [WEB]


def test_runtime_routes_to_its_reader_and_unknown_tries_all() -> None:
    docker, containerd = docker_reader(), containerd_reader()
    cache = ContainerCache([docker, containerd], clock=FakeClock())
    assert cache.get(DB, "containerd").name == "db"
    assert docker.inspected == []
    assert cache.lookup(ContainerRef(DB[:-1] + "9", "unknown")).name is None
    assert docker.inspected == [DB[:-1] + "9"]
    assert containerd.inspected == [DB, DB[:-1] + "9"]


def test_runtime_down_gives_id_only_record_and_retries_later() -> None:
    clock = FakeClock()
    docker = docker_reader(up=False)
    cache = ContainerCache([docker], retry_s=2.0, clock=clock)
    assert cache.get(WEB, "docker") == RuntimeContainer(id=WEB, runtime="docker")
    clock.now += 1.9
    cache.get(WEB, "docker")
    assert len(docker.inspected) == 1  # not asked once per event
    docker.up = True
    clock.now += 0.2
    assert cache.get(WEB, "docker").name == "web"
    assert len(docker.inspected) == 2


def test_unknown_runtime_with_no_reader_is_id_only() -> None:
    cache = ContainerCache([docker_reader()], clock=FakeClock())
    assert cache.get(WEB, "podman") == RuntimeContainer(id=WEB, runtime="podman")


def test_reader_bug_does_not_reach_the_tracer() -> None:
    class Broken(FakeReader):
        def inspect(self, cid: str) -> RuntimeContainer:
            raise ValueError("bad JSON")

    cache = ContainerCache([Broken("docker", [])], clock=FakeClock())
    assert cache.get(WEB, "docker").name is None


def test_gone_container_keeps_its_name_for_the_grace_period() -> None:
    clock = FakeClock()
    docker = docker_reader()
    cache = ContainerCache([docker], grace_s=5.0, clock=clock)
    cache.get(WEB, "docker")
    del docker.containers[WEB]  # `docker rm`: the runtime forgets it at once
    cache.mark_gone(WEB)
    clock.now += 4.9
    assert cache.get(WEB, "docker").name == "web"
    assert docker.inspected == [WEB]
    clock.now += 0.2
    assert cache.get(WEB, "docker").name is None  # asked again, and the runtime says gone
    assert docker.inspected == [WEB, WEB]


def test_expire_drops_only_entries_past_their_time() -> None:
    clock = FakeClock()
    cache = ContainerCache([docker_reader()], grace_s=5.0, clock=clock)
    cache.get(WEB, "docker")
    cache.get(WORKER, "docker")
    cache.mark_gone(WEB)
    clock.now += 4
    assert cache.expire() == 0
    clock.now += 2
    assert cache.expire() == 1
    assert len(cache) == 1


def test_expires_in_is_none_until_an_entry_has_a_time_limit() -> None:
    """No wakeup to expire anything while every entry is kept until reported gone."""
    clock = FakeClock()
    cache = ContainerCache([docker_reader()], grace_s=5.0, clock=clock)
    cache.get(WEB, "docker")
    assert cache.expires_in() is None
    cache.mark_gone(WEB)
    clock.now += 4
    assert cache.expires_in() == pytest.approx(1.0)
    clock.now += 2
    assert cache.expires_in() == 0.0 and cache.expire() == 1 and cache.expires_in() is None


def test_mark_gone_of_unknown_id_is_harmless() -> None:
    cache = ContainerCache([docker_reader()], clock=FakeClock())
    cache.mark_gone(WEB)
    assert len(cache) == 0


def test_least_recently_used_is_evicted() -> None:
    docker = docker_reader()
    cache = ContainerCache([docker], max_entries=1, clock=FakeClock())
    cache.get(WEB, "docker")
    cache.get(WORKER, "docker")
    cache.get(WEB, "docker")
    assert docker.inspected == [WEB, WORKER, WEB]


# resolve(): what a user typed


def test_resolve_by_name_is_completed_by_inspect() -> None:
    cache = ContainerCache([docker_reader()], clock=FakeClock())
    [web] = cache.resolve("web")
    assert (web.id, web.pid, web.stop_signal) == (WEB, 101, "SIGQUIT")


def test_resolve_same_name_in_two_runtimes_returns_both() -> None:
    cache = ContainerCache([docker_reader(), containerd_reader()], clock=FakeClock())
    assert [c.id for c in cache.resolve("web")] == [WEB, POD]


def test_resolve_full_id_and_docker_style_slash_name() -> None:
    cache = ContainerCache([docker_reader(), containerd_reader()], clock=FakeClock())
    assert [c.name for c in cache.resolve(DB)] == ["db"]
    assert [c.id for c in cache.resolve("/worker")] == [WORKER]


def test_resolve_unique_prefix() -> None:
    cache = ContainerCache([docker_reader(), containerd_reader()], clock=FakeClock())
    assert [c.name for c in cache.resolve("abc2")] == ["worker"]
    assert [c.name for c in cache.resolve("cd5")] == ["db"]


def test_resolve_ambiguous_prefix_lists_candidates() -> None:
    cache = ContainerCache([docker_reader()], clock=FakeClock())
    with pytest.raises(ContainerNotFound) as err:
        cache.resolve("abc")
    assert err.value.message == (
        f"'abc' matches 2 containers: {WEB[:12]} (web), {WORKER[:12]} (worker)"
    )


def test_resolve_prefix_needs_three_hex_chars() -> None:
    cache = ContainerCache([docker_reader()], clock=FakeClock())
    with pytest.raises(ContainerNotFound) as err:
        cache.resolve("ab")
    assert err.value.message == "no container 'ab'; containers: web, worker"


def test_resolve_nothing_lists_at_most_20_names() -> None:
    many = [RuntimeContainer(id=f"{i:064x}", name=f"c{i:02d}") for i in range(25)]
    cache = ContainerCache([FakeReader("docker", many)], clock=FakeClock())
    with pytest.raises(ContainerNotFound) as err:
        cache.resolve("nginx")
    msg = err.value.message
    assert msg.startswith("no container 'nginx'; containers: c00, c01, ")
    assert msg.endswith("c19 (and 5 more)")
    assert "\n" not in msg


def test_resolve_escapes_what_it_prints() -> None:
    evil = RuntimeContainer(id="f" * 64, name="x\x1b[2Jy")
    cache = ContainerCache([FakeReader("docker", [evil])], clock=FakeClock())
    with pytest.raises(ContainerNotFound) as err:
        cache.resolve("q\x07")
    assert "\x1b" not in err.value.message and "\x07" not in err.value.message
    assert "x\\x1b[2Jy" in err.value.message


def test_resolve_with_one_runtime_down_uses_the_other() -> None:
    cache = ContainerCache([docker_reader(up=False), containerd_reader()], clock=FakeClock())
    assert [c.id for c in cache.resolve("web")] == [POD]
    with pytest.raises(ContainerNotFound) as err:
        cache.resolve("worker")
    assert err.value.message == (
        "no container 'worker'; containers: db, web; not reachable: docker: socket absent"
    )


def test_resolve_with_every_runtime_down() -> None:
    cache = ContainerCache([docker_reader(up=False), containerd_reader(up=False)])
    with pytest.raises(RuntimeUnavailable) as err:
        cache.resolve("web")
    assert err.value.message == (
        "cannot list containers: docker: socket absent; containerd: socket absent"
    )
    # a full id is still traceable: the name can come later
    assert cache.resolve(DB) == [RuntimeContainer(id=DB, runtime="unknown")]


def test_resolve_empty_query() -> None:
    cache = ContainerCache([docker_reader()])
    with pytest.raises(ContainerNotFound) as err:
        cache.resolve("  ")
    assert err.value.message == "empty container name"


def test_resolve_primes_the_cache() -> None:
    docker = docker_reader()
    cache = ContainerCache([docker], clock=FakeClock())
    cache.resolve("web")
    cache.get(WEB, "docker")
    assert docker.inspected == [WEB]


# A fresh node: runtimes that are not installed are absent, not down.


class AbsentReader(FakeReader):
    def __init__(self, runtime: str) -> None:
        super().__init__(runtime, [])

    def list_containers(self) -> list[RuntimeContainer]:
        raise RuntimeAbsent(f"{self.runtime}: no /run/{self.runtime}")


def test_an_answering_runtime_with_no_containers_is_not_a_failure() -> None:
    cache = ContainerCache([FakeReader("docker", []), AbsentReader("cri-o")])
    with pytest.raises(ContainerNotFound) as e:
        cache.resolve("test-app")
    assert e.value.code == 7
    assert e.value.message == "no container 'test-app'; no containers at all (docker answered)"


def test_no_runtime_installed_is_not_found_and_says_what_was_looked_for() -> None:
    cache = ContainerCache([AbsentReader("docker"), AbsentReader("cri-o")])
    with pytest.raises(ContainerNotFound) as e:
        cache.resolve("test-app")
    assert e.value.code == 7
    assert "no container runtime found here (docker: no /run/docker; cri-o: no /run/cri-o)" in (
        e.value.message
    )


def test_the_only_installed_runtime_down_is_unavailable_even_beside_absent_ones() -> None:
    cache = ContainerCache([docker_reader(up=False), AbsentReader("cri-o")])
    with pytest.raises(RuntimeUnavailable) as e:
        cache.resolve("web")
    assert e.value.code == 8
    assert e.value.message == "cannot list containers: docker: socket absent"


def test_unknown_pod_lists_what_the_runtimes_have() -> None:
    cache = ContainerCache([docker_reader(), AbsentReader("cri-o")])
    with pytest.raises(ContainerNotFound) as e:
        cache.pod_members("default", "nope")
    assert e.value.message == ("no pod 'nope' in namespace 'default'; containers: web, worker")


def test_list_all_says_how_each_runtime_answered() -> None:
    listing = ContainerCache(
        [docker_reader(), containerd_reader(up=False), AbsentReader("cri-o")]
    ).list_all()
    assert [(r.runtime, r.state) for r in listing.runtimes] == [
        ("docker", "answered"),
        ("containerd", "failed"),
        ("cri-o", "absent"),
    ]
    assert len(listing.found) == 2
