"""Docker's on-disk fallback (config.v2.json) and when DockerClient falls back to it.

tests/data/docker/config.v2.json is a real file from the project's machine (Docker 20.10),
cut down to the fields sigtrace reads.
"""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sigtrace.containers.docker import DockerClient, container_from_inspect
from sigtrace.containers.records import PodRef, RuntimeContainer
from sigtrace.errors import ContainerNotFound, RuntimeAbsent, RuntimeUnavailable

FIXTURE = Path(__file__).parent.parent / "data" / "docker" / "config.v2.json"
CID = "14c7cfcd1d13c7c66373c8f1bc5e9634c9a7aac17331f8d000ee21164f589d4e"
POD_UID = "0b1c2d3e-aaaa-bbbb-cccc-000000000001"
EXPECTED = RuntimeContainer(
    id=CID,
    name="st-probe",
    runtime="docker",
    image="st-busybox",
    pid=5801,
    labels={
        "io.kubernetes.container.name": "main",
        "io.kubernetes.pod.name": "fakepod",
        "io.kubernetes.pod.namespace": "default",
        "io.kubernetes.pod.uid": POD_UID,
    },
    stop_signal="SIGUSR1",
    pod=PodRef(name="fakepod", namespace="default", uid=POD_UID, container="main"),
)


def fixture_doc() -> dict:
    return json.loads(FIXTURE.read_text())


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # unix socket paths are limited to 108 bytes: pytest's tmp_path can be longer
    d = tempfile.mkdtemp(prefix="st-", dir="/tmp")
    yield Path(d)
    shutil.rmtree(d)


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    containers = tmp_path / "containers"
    (containers / CID).mkdir(parents=True)
    shutil.copy(FIXTURE, containers / CID / "config.v2.json")
    (containers / ("0" * 64)).mkdir()
    (containers / ("0" * 64) / "config.v2.json").write_text("{not json")
    (containers / "not-an-id").mkdir()
    return tmp_path


def offline(data_root: Path) -> DockerClient:
    return DockerClient(socket_path=str(data_root / "absent.sock"), data_root=str(data_root))


# The parser


def test_parse_recorded_config() -> None:
    assert container_from_inspect(fixture_doc()) == EXPECTED


def test_stopped_container_has_no_pid() -> None:
    doc = fixture_doc()
    doc["State"]["Running"] = False
    assert container_from_inspect(doc).pid == 0


def test_labels_without_a_pod_give_no_pod() -> None:
    doc = fixture_doc()
    del doc["Config"]["Labels"]["io.kubernetes.pod.namespace"]
    assert container_from_inspect(doc).pod is None


@pytest.mark.parametrize(
    "doc",
    [
        {},
        {"ID": 7, "Name": ["x"], "Config": "nope", "State": None},
        {"ID": CID, "Config": {"Labels": {"a": 1, "b": "2"}}, "State": {"Pid": "5801"}},
        {"ID": CID, "State": {"Running": True, "Pid": True}},
    ],
)
def test_wrong_types_are_ignored_not_raised(doc: dict) -> None:
    c = container_from_inspect(doc)
    assert c.pid == 0 and c.name is None and c.image is None and c.stop_signal is None
    assert c.labels in ({}, {"b": "2"})


# The fallback, through DockerClient


def test_inspect_from_disk_by_id_name_and_prefix(data_root: Path) -> None:
    docker = offline(data_root)
    assert docker.inspect(CID) == EXPECTED
    assert docker.inspect("st-probe") == EXPECTED
    assert docker.inspect("/st-probe") == EXPECTED
    assert docker.inspect("14c7cf") == EXPECTED


def test_list_from_disk_skips_broken_entries(data_root: Path) -> None:
    assert offline(data_root).list_containers() == [EXPECTED]


def test_unknown_container_on_disk(data_root: Path) -> None:
    with pytest.raises(ContainerNotFound) as err:
        offline(data_root).inspect("nginx")
    assert err.value.message == f"no docker container 'nginx' in {data_root}/containers"


@pytest.mark.parametrize("ref", ["../../etc/passwd", "a/b", "", "x\ny", "-rf"])
def test_refs_that_are_not_docker_names_are_refused(data_root: Path, ref: str) -> None:
    with pytest.raises(ContainerNotFound) as err:
        offline(data_root).inspect(ref)
    assert "\n" not in err.value.message


def test_no_daemon_and_no_files_is_docker_absent(tmp_path: Path) -> None:
    docker = DockerClient(socket_path=str(tmp_path / "absent.sock"), data_root=str(tmp_path))
    with pytest.raises(RuntimeAbsent) as err:
        docker.list_containers()
    assert err.value.message == (f"docker: no {tmp_path}/absent.sock and no {tmp_path}/containers")


def test_no_daemon_and_unreadable_files_is_a_failure(tmp_path: Path) -> None:
    (tmp_path / "containers").write_text("not a directory")
    docker = DockerClient(socket_path=str(tmp_path / "absent.sock"), data_root=str(tmp_path))
    with pytest.raises(RuntimeUnavailable) as err:
        docker.list_containers()
    assert not isinstance(err.value, RuntimeAbsent)
    assert err.value.message == (
        f"docker socket {tmp_path}/absent.sock: no such file or directory; "
        f"and {tmp_path}/containers is not readable"
    )


def test_silent_daemon_times_out_to_disk(data_root: Path, short_dir: Path) -> None:
    path = str(short_dir / "silent.sock")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen(8)  # never accepts: connect succeeds, no answer comes
        docker = DockerClient(socket_path=path, data_root=str(data_root), timeout=0.2)
        assert docker.inspect(CID).name == "st-probe"


def serve_once(path: str, status: int, body: bytes) -> threading.Thread:
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(1)

    def run() -> None:
        conn, _ = server.accept()
        with conn, server:
            conn.recv(65536)
            head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n\r\n"
            conn.sendall(head.encode() + body)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_daemon_answer_is_used(data_root: Path, short_dir: Path) -> None:
    path = str(short_dir / "d.sock")
    doc = fixture_doc()
    doc["Id"] = doc.pop("ID")
    doc["Name"] = "/from-api"
    serve_once(path, 200, json.dumps(doc).encode())
    docker = DockerClient(socket_path=path, data_root=str(data_root))
    assert docker.inspect("from-api").name == "from-api"


def test_daemon_404_is_not_found_without_fallback(data_root: Path, short_dir: Path) -> None:
    path = str(short_dir / "d.sock")
    serve_once(path, 404, b'{"message":"No such container: st-probe"}')
    with pytest.raises(ContainerNotFound):
        DockerClient(socket_path=path, data_root=str(data_root)).inspect("st-probe")


def test_daemon_error_falls_back_to_disk(data_root: Path, short_dir: Path) -> None:
    path = str(short_dir / "d.sock")
    serve_once(path, 500, b'{"message":"boom"}')
    docker = DockerClient(socket_path=path, data_root=str(data_root))
    assert docker.inspect("st-probe") == EXPECTED
