"""--container/--pod selection on a fresh node: --wait never fails on absence."""

from __future__ import annotations

import pytest

from sigtrace.containers.cache import ContainerCache
from sigtrace.containers.select import ContainerSelector
from sigtrace.errors import ContainerNotFound, RuntimeUnavailable
from tests.unit.test_container_cache import AbsentReader, FakeReader, docker_reader


def selector(readers: list, wait: bool, pods: tuple[str, ...] = ()) -> ContainerSelector:
    # cgroups/procfs are only asked about containers that matched: none do here
    return ContainerSelector(ContainerCache(readers), None, None, ("test-app",), pods, wait)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("readers", "error", "code"),
    [
        ([FakeReader("docker", []), AbsentReader("cri-o")], ContainerNotFound, 7),
        ([AbsentReader("docker"), AbsentReader("cri-o")], ContainerNotFound, 7),
        ([docker_reader(up=False), AbsentReader("cri-o")], RuntimeUnavailable, 8),
    ],
)
def test_without_wait_absence_is_7_and_a_silent_runtime_8(
    readers: list, error: type, code: int
) -> None:
    with pytest.raises(error) as e:
        selector(readers, wait=False).initial()
    assert e.value.code == code


@pytest.mark.parametrize(
    "readers",
    [
        [FakeReader("docker", []), AbsentReader("cri-o")],
        [AbsentReader("docker"), AbsentReader("containerd"), AbsentReader("cri-o")],
        [docker_reader(up=False), AbsentReader("cri-o")],
    ],
)
def test_with_wait_nothing_found_is_no_error_and_says_why(readers: list) -> None:
    sel = selector(readers, wait=True, pods=("default/web",))
    assert sel.initial() == set()
    assert set(sel.waiting) == {"container test-app", "pod default/web"}
    assert sel.poll() == set()  # and later polls keep waiting quietly
