"""The container image (packaging/build-image.sh), run the way the DaemonSet runs it.

Capabilities, host mounts, env, args, read-only root and no_new_privs are read from
packaging/kubernetes/sigtrace.yaml, not restated here. Two runtimes:

- containerd (`ctr run`, what Kubernetes nodes run): exactly the DaemonSet's capabilities.
  It must write a `start` record, a `signal` record for a SIGTERM the test sends to a host
  `sleep`, answer /healthz and /metrics (probed from inside the pod's network namespace, as
  the kubelet would from the node), and exit 0 within 2 s of the kubelet's SIGTERM.
- Docker: the same, then `docker stop` must exit 0 within 2 s. Docker 20.10 (Debian 12) does
  not know CAP_BPF/CAP_PERFMON; there the manifest's own fallback for kernels < 5.8 is used
  (SYS_ADMIN in their place), and the test says so.

Skips only when not root; fails if Docker or containerd does not answer.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from sigtrace.backends import NO_SYSCALLS
from tests.tracing import check_schema

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "packaging" / "build-image.sh"
MANIFEST = ROOT / "packaging" / "kubernetes" / "sigtrace.yaml"
NODE = "st-test-node"
CTR_NAMESPACE = "sigtrace-test"
STOP_LIMIT_S = 2.0
WAIT_S = 20.0
# What the container runs: None is the image's ENTRYPOINT (`sigtrace daemon`) with the
# DaemonSet's args. To run plain `sigtrace` for a while instead, this one line becomes
# COMMAND = ["sigtrace", "--format", "jsonl", "--duration", "5"]
COMMAND: list[str] | None = None


@dataclass(frozen=True)
class PodSpec:
    """The DaemonSet's container, as runtime-neutral facts."""

    entrypoint: list[str]
    args: list[str]
    caps: list[str]  # without CAP_
    mounts: list[tuple[str, str]]  # (host path, container path), all read-only
    missing: list[str]  # host paths absent here (a kubelet would create them; we don't)
    env: dict[str, str]
    metrics_port: int
    no_new_privs: bool
    read_only_root: bool
    seccomp: str


def pod_spec(image: str) -> PodSpec:
    ds = next(d for d in yaml.safe_load_all(MANIFEST.read_text()) if d["kind"] == "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert pod["hostPID"] is True and sc["privileged"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    hostpaths = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"]}
    mounts, missing = [], []
    for m in c["volumeMounts"]:
        assert m["readOnly"] is True
        src = hostpaths[m["name"]]
        (mounts if os.path.exists(src) else missing).append((src, m["mountPath"]))
    env = {}
    for e in c["env"]:
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            assert e["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
            env[e["name"]] = NODE
    entrypoint = json.loads(
        subprocess.check_output(
            ["docker", "image", "inspect", "--format", "{{json .Config.Entrypoint}}", image],
            text=True,
        )
    )
    args = list(c["args"])
    if COMMAND is not None:
        entrypoint, args = COMMAND[:1], COMMAND[1:]
    (port,) = c["ports"]
    return PodSpec(
        entrypoint=entrypoint,
        args=args,
        caps=list(sc["capabilities"]["add"]),
        mounts=mounts,
        missing=[src for src, _ in missing],
        env=env,
        metrics_port=port["containerPort"],
        no_new_privs=sc["allowPrivilegeEscalation"] is False,
        read_only_root=sc["readOnlyRootFilesystem"] is True,
        seccomp=sc["seccompProfile"]["type"],
    )


@pytest.fixture(scope="module")
def image(docker_daemon: None) -> str:
    start = time.monotonic()
    r = subprocess.run(
        [str(BUILD)], capture_output=True, text=True, timeout=900, check=False, cwd=ROOT
    )
    assert r.returncode == 0, f"build-image.sh failed:\n{r.stderr[-4000:]}"
    name = r.stdout.strip().splitlines()[-1]
    print(f"image {name} ready in {time.monotonic() - start:.1f}s")
    return name


def records(text: str) -> list[dict]:
    """The records in `docker logs` (stdout and stderr): the daemon's own JSON log lines
    (`--log-format json`, as the DaemonSet runs it) have no `schema`."""
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    recs = [r for r in lines if "schema" in r]
    check_schema(recs)
    return recs


def wait_for(
    read: Callable[[], str], pred: Callable[[dict], bool], alive: Callable[[], bool]
) -> dict:
    deadline = time.monotonic() + WAIT_S
    while True:
        out = read()
        for rec in records(out):
            if pred(rec):
                return rec
        if not alive():
            raise AssertionError(f"the container exited early; output:\n{out[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no matching record after {WAIT_S}s; output:\n{out[-3000:]}")
        time.sleep(0.1)


@pytest.fixture
def host_sleep() -> Iterator[subprocess.Popen]:
    p = subprocess.Popen(["sleep", "120"])
    try:
        yield p
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()


def term_and_check(
    read: Callable[[], str], alive: Callable[[], bool], victim: subprocess.Popen
) -> None:
    """SIGTERM to a host process; the container must report it as a signal record."""
    victim.send_signal(signal.SIGTERM)
    assert victim.wait(5) == -signal.SIGTERM
    rec = wait_for(
        read,
        lambda r: r["type"] == "signal" and (r.get("target") or {}).get("pid") == victim.pid,
        alive,
    )
    assert rec["signal"] == "SIGTERM" and rec["outcome"] == "delivered", rec
    assert rec["target"]["comm"] == "sleep"
    assert rec.get("node") == NODE, rec  # NODE_NAME from the downward API


def check_start(read: Callable[[], str], alive: Callable[[], bool]) -> dict:
    start = wait_for(read, lambda r: r["type"] == "start", alive)
    assert start["schema"] == "sigtrace.v1" and start["backend"] == "core", start
    # Everything the DaemonSet is meant to see, it sees: no hook is missing. The one entry is
    # the daemon's own choice (no syscall hook by default: it would tax the node).
    assert start["cannot_see"] == [NO_SYSCALLS], start
    return start


# --- containerd


def ctr(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(
        ["ctr", "-n", CTR_NAMESPACE, *args], capture_output=True, text=True, timeout=timeout
    )
    if check and r.returncode != 0:
        raise AssertionError(f"ctr {' '.join(args)} -> {r.returncode}: {r.stderr.strip()}")
    return r


@pytest.fixture(scope="module")
def ctr_image(image: str) -> str:
    """The Docker image imported into containerd, once per image id."""
    if ctr("version", check=False, timeout=20).returncode != 0:
        pytest.fail("containerd does not answer; start it with scripts/services", pytrace=False)
    image_id = subprocess.check_output(
        ["docker", "image", "inspect", "--format", "{{.Id}}", image], text=True
    ).strip()
    ref = f"docker.io/library/sigtrace:id-{image_id.removeprefix('sha256:')[:12]}"
    if ref not in ctr("images", "ls", "-q").stdout.split():
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        r = subprocess.run(
            ["ctr", "-n", CTR_NAMESPACE, "images", "import", "-"],
            stdin=save.stdout,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert save.wait() == 0 and r.returncode == 0, r.stderr
        imported = re.search(r"unpacking (\S+) ", r.stdout)
        assert imported, r.stdout
        ctr("images", "tag", "--force", imported.group(1), ref)
        # Earlier builds' copies: containerd frees their layers once no name refers to them.
        for old in ctr("images", "ls", "-q").stdout.split():
            if old.startswith("docker.io/library/sigtrace:") and old != ref:
                ctr("images", "rm", old, check=False)
    return ref


def exec_in(name: str, code: str) -> str:
    """Python inside the running container (its network namespace, its files)."""
    r = ctr(
        "task", "exec", "--exec-id", f"probe-{secrets.token_hex(3)}", name,
        "/opt/sigtrace/bin/python", "-c", code, timeout=30,
    )  # fmt: skip
    return r.stdout


def test_containerd_daemonset_capabilities(
    ctr_image: str, image: str, host_sleep: subprocess.Popen, tmp_path: Path
) -> None:
    spec = pod_spec(image)
    assert spec.seccomp == "Unconfined"  # no --seccomp below
    name = f"st-test-image-{secrets.token_hex(3)}"
    # The default capability set containerd gives, dropped one by one (ctr has no "ALL").
    defaults = [
        "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
        "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
    ]  # fmt: skip
    flags = [f"--cap-drop=CAP_{c}" for c in defaults if c not in spec.caps]
    flags += [f"--cap-add=CAP_{c}" for c in spec.caps]
    flags += [f"--mount=type=bind,src={s},dst={d},options=rbind:ro" for s, d in spec.mounts]
    flags += [f"--env={k}={v}" for k, v in spec.env.items()]
    flags.append(f"--with-ns=pid:/proc/{os.getpid()}/ns/pid")  # hostPID
    if spec.read_only_root:
        flags.append("--read-only")
    out = tmp_path / "stdout"
    err = tmp_path / "stderr"
    with out.open("w") as o, err.open("w") as e:
        run = subprocess.Popen(
            ["ctr", "-n", CTR_NAMESPACE, "run", "--rm", *flags, ctr_image, name,
             *spec.entrypoint, *spec.args],
            stdout=o, stderr=e,
        )  # fmt: skip
    try:
        read = out.read_text
        alive = lambda: run.poll() is None  # noqa: E731
        check_start(read, alive)
        # Exactly the manifest's capabilities, seen from the host.
        pid = int(ctr("task", "ls").stdout.split(name, 1)[1].split()[0])
        status = Path(f"/proc/{pid}/status").read_text()
        cap_eff = int(re.search(r"CapEff:\s*([0-9a-f]+)", status).group(1), 16)  # type: ignore[union-attr]
        bits = {"DAC_READ_SEARCH": 2, "SYS_PTRACE": 19, "SYS_ADMIN": 21, "PERFMON": 38, "BPF": 39}
        assert cap_eff == sum(1 << bits[c] for c in spec.caps), hex(cap_eff)
        # (ctr has no no-new-privileges switch: allowPrivilegeEscalation is checked with Docker.)
        term_and_check(read, alive, host_sleep)
        if spec.args[:1] == ["--metrics"]:
            url = f"http://127.0.0.1:{spec.metrics_port}"
            probe = "import urllib.request as u; print(u.urlopen('{}', timeout=5).read().decode())"
            assert exec_in(name, probe.format(url + "/healthz")).strip() == "ok"
            metrics = exec_in(name, probe.format(url + "/metrics"))
            assert re.search(r'sigtrace_signals_total\{[^}]*outcome="delivered"', metrics)
            assert "sigtrace_tracing_up 1.0" in metrics
        # The kubelet's stop: SIGTERM to the container's init.
        start = time.monotonic()
        ctr("task", "kill", "--signal", "SIGTERM", name)
        run.wait(10)
        elapsed = time.monotonic() - start
    finally:
        if run.poll() is None:
            ctr("task", "kill", "--signal", "SIGKILL", name, check=False)
            run.wait(10)
        ctr("task", "rm", "--force", name, check=False)
        ctr("container", "rm", name, check=False)
    stderr = err.read_text()
    assert run.returncode == 0, stderr
    assert elapsed < STOP_LIMIT_S, f"stopped in {elapsed:.2f}s"
    assert records(out.read_text())[-1]["type"] == "stop", stderr


# --- Docker


def docker_caps(caps: list[str]) -> tuple[list[str], str | None]:
    """The manifest's capabilities, or, where Docker does not know CAP_BPF/CAP_PERFMON
    (before 23.0), the manifest's documented substitute for them: SYS_ADMIN."""
    r = subprocess.run(
        ["docker", "run", "--rm", "--pull", "never", "--cap-drop", "ALL",
         *[f"--cap-add={c}" for c in caps], "--entrypoint", "true", "sigtrace-base:bookworm"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if r.returncode == 0:
        return caps, None
    assert "unknown capability" in r.stderr, r.stderr
    sub = [c for c in caps if c not in ("BPF", "PERFMON")] + ["SYS_ADMIN"]
    return sub, f"this Docker does not know CAP_BPF/CAP_PERFMON; used {sub}"


def test_docker_stop_is_graceful(
    image: str, host_sleep: subprocess.Popen, record_property: Callable[[str, object], None]
) -> None:
    spec = pod_spec(image)
    caps, note = docker_caps(spec.caps)
    if note:
        record_property("capabilities", note)
        print(note)
    name = f"st-test-image-{secrets.token_hex(3)}"
    flags = ["--cap-drop=ALL", *[f"--cap-add={c}" for c in caps], "--pid=host"]
    flags += [f"--volume={s}:{d}:ro" for s, d in spec.mounts]
    flags += [f"--env={k}={v}" for k, v in spec.env.items()]
    flags += [f"--security-opt=seccomp={spec.seccomp.lower()}"]
    if spec.no_new_privs:
        flags.append("--security-opt=no-new-privileges")
    if spec.read_only_root:
        flags.append("--read-only")
    # Published on the loopback only: /healthz is read from the host at 127.0.0.1.
    flags.append(f"--publish=127.0.0.1::{spec.metrics_port}")
    flags += ["--entrypoint", spec.entrypoint[0]]
    args = [*spec.entrypoint[1:], *spec.args]
    base = ["run", "-d", "--pull", "never", "--name", name, "--label", "sigtrace.test=1"]
    subprocess.run(["docker", *base, *flags, image, *args], check=True, capture_output=True)
    try:

        def read() -> str:
            r = subprocess.run(["docker", "logs", name], capture_output=True, text=True)
            return r.stdout + r.stderr

        def alive() -> bool:
            state = subprocess.run(
                ["docker", "inspect", "--format", "{{.State.Running}}", name],
                capture_output=True, text=True,
            )  # fmt: skip
            return state.stdout.strip() == "true"

        check_start(read, alive)
        status = subprocess.check_output(
            ["docker", "inspect", "--format", "{{.State.Pid}}", name], text=True
        )
        assert "NoNewPrivs:\t1" in Path(f"/proc/{status.strip()}/status").read_text()
        term_and_check(read, alive, host_sleep)
        if spec.args[:1] == ["--metrics"]:
            port = (
                subprocess.check_output(
                    ["docker", "port", name, f"{spec.metrics_port}/tcp"], text=True
                )
                .split(":")[-1]
                .strip()
            )
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                assert r.read() == b"ok\n"
        start = time.monotonic()
        subprocess.run(["docker", "stop", "-t", "10", name], check=True, capture_output=True)
        elapsed = time.monotonic() - start
        code = subprocess.check_output(
            ["docker", "inspect", "--format", "{{.State.ExitCode}}", name], text=True
        )
        logs = read()
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    assert int(code) == 0, logs[-3000:]
    assert elapsed < STOP_LIMIT_S, f"docker stop took {elapsed:.2f}s"
    assert records(logs)[-1]["type"] == "stop", logs[-3000:]


def test_image_carries_the_oci_labels(image: str) -> None:
    fmt = "{{json .Config.Labels}}"
    r = subprocess.run(["docker", "image", "inspect", "--format", fmt, image], capture_output=True)
    labels = json.loads(r.stdout)

    def git(*args: str) -> str:
        out = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
        return out.stdout.strip()

    head, origin = git("rev-parse", "HEAD"), git("remote", "get-url", "origin")
    oci = "org.opencontainers.image."
    assert labels[oci + "licenses"] == "Apache-2.0"
    # the build is skipped when its inputs did not change: the label names the commit that
    # built it, this one or one before it
    rev = labels[oci + "revision"].removesuffix("-dirty")
    ancestor = subprocess.run(["git", "-C", str(ROOT), "merge-base", "--is-ancestor", rev, head])
    assert ancestor.returncode == 0, (rev, head)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", labels[oci + "created"])
    assert labels[oci + "version"] and labels[oci + "title"] == "sigtrace"
    # where it comes from: the checkout's origin (SOURCE_URL overrides; none without either)
    assert labels.get(oci + "source") == (origin or None)
