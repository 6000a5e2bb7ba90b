"""`sigtrace explain`'s predictor on process trees shaped like the test images (what /proc
showed for them under Docker), and the /proc reading on a fake /proc tree."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from sigtrace.commands.explain import explain_record, render_text
from sigtrace.predict import Proc, Snapshot, predict
from sigtrace.procfs import Procfs
from sigtrace.proctree import read_proc
from tests.tracing import check_schema

TERM = 15
SLEEP = Proc(40, "sleep", 10, "sleep 1")
SERVER = Proc(31, "server.sh", 7, "/bin/sh /bin/server.sh", caught=True, children=(SLEEP,))


def snap(pid1: Proc, signo: int = TERM) -> Snapshot:
    return Snapshot(signo, pid1)


def test_shell_form_pid1_drops_it_and_everything_is_killed() -> None:
    sh = Proc(20, "sh", 1, "/bin/sh -c /bin/server.sh; exit $?", children=(SERVER,))
    p = predict(snap(sh))
    assert (p.expect, p.graceful, p.confidence) == ("ignored_by_pid1", False, "high")
    assert p.summary.startswith("SIGTERM will be dropped: PID 1 `/bin/sh -c")
    assert p.exit_code == 10
    assert "server.sh (pid 31 ns:7), sleep (pid 40 ns:10) are SIGKILLed" in p.summary
    assert "exec form" in p.hint and "--init" in p.hint


def test_exec_form_server_handles_it() -> None:
    p = predict(snap(Proc(20, "server.sh", 1, "/bin/sh /bin/server.sh", caught=True)))
    assert (p.expect, p.graceful, p.confidence) == ("graceful", True, "high")


def test_sig_ign_pid1_discards_it() -> None:
    pid1 = Proc(20, "sigign.sh", 1, "/bin/sh /bin/sigign.sh", ignored=True, children=(SLEEP,))
    p = predict(snap(pid1))
    assert (p.expect, p.graceful, p.confidence) == ("ignored_sig_ign", False, "high")
    assert "sleep (pid 40 ns:10) is SIGKILLed" in p.summary


def test_shell_script_without_handler_may_still_exec_later() -> None:
    p = predict(snap(Proc(20, "entry.sh", 1, "/bin/sh /entry.sh")))
    assert (p.expect, p.confidence) == ("ignored_by_pid1", "medium")
    assert "`exec server" in p.hint


def test_program_without_handler_or_other_stop_signal() -> None:
    p = predict(snap(Proc(20, "httpd", 1, "httpd -DFOREGROUND"), signo=28))  # SIGWINCH
    assert (p.expect, p.confidence) == ("ignored_by_pid1", "high")
    assert "SIGWINCH" in p.summary and "STOPSIGNAL" in p.hint


def test_tini_waits_and_forwards_to_a_handling_child() -> None:
    tini = Proc(20, "docker-init", 1, "/sbin/docker-init -- /bin/server.sh", sigwait=True)
    p = predict(snap(replace(tini, children=(SERVER,))))
    assert (p.expect, p.graceful, p.confidence) == ("graceful", True, "medium")
    assert "forwards it to server.sh" in p.summary


def test_tini_over_a_shell_leaves_the_server_to_the_teardown() -> None:
    sh = Proc(30, "sh", 8, "/bin/sh -c /bin/server.sh; exit $?", children=(SERVER,))
    tini = Proc(20, "docker-init", 1, "/sbin/docker-init -- /bin/sh -c …", children=(sh,))
    p = predict(snap(tini))  # known by name even when not caught in sigtimedwait
    # tini passes SIGTERM to sh, which dies of it; server.sh, which handles it, never gets it
    assert (p.expect, p.confidence, p.exit_code) == ("not_forwarded", "medium", 10)
    assert "server.sh (pid 31 ns:7)" in p.summary and "teardown" in p.summary
    assert "without passing it to server.sh (pid 31 ns:7)" in p.hint


def test_tini_over_a_shell_whose_children_have_no_handler_is_graceful() -> None:
    sh = Proc(30, "sh", 8, "/bin/sh -c sleep 9", children=(SLEEP,))
    tini = Proc(20, "docker-init", 1, "/sbin/docker-init -- /bin/sh -c …", children=(sh,))
    p = predict(snap(tini))
    assert (p.expect, p.confidence, p.exit_code) == ("graceful", "medium", 0)


def test_init_forwarding_to_a_child_that_ignores_it() -> None:
    child = Proc(30, "app", 7, "app", ignored=True)
    p = predict(snap(Proc(20, "dumb-init", 1, "dumb-init app", sigwait=True, children=(child,))))
    assert (p.expect, p.graceful, p.exit_code) == ("ignored_sig_ign", False, 10)
    assert p.hint.startswith("app (pid 30 ns:7), to which PID 1 `dumb-init app` passes SIGTERM on")


def test_sig_ign_hint_names_the_stop_signal() -> None:
    pid1 = Proc(20, "app", 1, "app", ignored=True)
    p = predict(snap(pid1, signo=3))
    assert "`trap '' QUIT`" in p.hint and "TERM" not in p.hint


def test_blocked_and_not_waiting_stays_pending() -> None:
    p = predict(snap(Proc(20, "app", 1, "app", blocked=True)))
    assert (p.expect, p.graceful, p.confidence) == ("blocked", False, "low")
    assert p.exit_code == 12  # a signalfd reader looks the same: no answer to gate on


def test_shell_handler_over_workers_that_want_it_is_unsure_and_not_graceful() -> None:
    # The wrapper that exits first and the one that forwards and waits look the same in /proc.
    pid1 = Proc(20, "noforward.sh", 1, "/bin/sh /bin/noforward.sh", caught=True)
    p = predict(snap(replace(pid1, children=(SERVER,))))
    assert (p.expect, p.graceful, p.confidence, p.exit_code) == ("not_forwarded", False, "low", 12)
    assert "server.sh (pid 31 ns:7) handles SIGTERM too" in p.summary
    assert "may exit on SIGTERM without passing it to server.sh" in p.hint


def test_program_handler_over_workers_is_graceful_but_unsure() -> None:
    master = Proc(20, "gunicorn", 1, "gunicorn app", caught=True, children=(SERVER,))
    p = predict(snap(master))
    assert (p.expect, p.confidence, p.exit_code) == ("graceful", "low", 12)


# The edge: /proc as the predictor sees it


def fake_proc(root: Path, pid: int, name: str, ns: int, cmd: bytes, **kw: str) -> None:
    d = root / str(pid)
    (d / "task" / str(pid)).mkdir(parents=True)
    status = {"Name": name, "State": "S (sleeping)", "Tgid": str(pid), "Pid": str(pid)}
    status |= {"PPid": kw.pop("ppid", "0"), "Uid": "0\t0\t0\t0"}
    status |= {"NStgid": f"{pid}\t{ns}", "NSpid": f"{pid}\t{ns}"}
    status |= {"SigBlk": "0", "SigIgn": "0", "SigCgt": "0", **kw}
    (d / "status").write_text("".join(f"{k}:\t{v}\n" for k, v in status.items()))
    (d / "cmdline").write_bytes(cmd)
    (d / "wchan").write_text("do_sigtimedwait.isra.0" if name == "docker-init" else "do_wait")


@pytest.mark.parametrize("children_files", [True, False])
def test_read_proc_builds_the_tree_with_dispositions(tmp_path: Path, children_files: bool) -> None:
    fake_proc(tmp_path, 100, "docker-init", 1, b"/sbin/docker-init\0--\0/bin/server.sh\0")
    fake_proc(tmp_path, 101, "server.sh", 6, b"/bin/sh\0/bin/server.sh\0", ppid="100",
              SigCgt="0000000000014002", SigIgn="0000000000000004")  # fmt: skip
    fake_proc(tmp_path, 102, "sleep", 8, b"sleep\x001\0", ppid="101")
    if children_files:  # CONFIG_PROC_CHILDREN; without it, the PPid scan finds the same
        (tmp_path / "100/task/100/children").write_text("101 ")
        (tmp_path / "101/task/101/children").write_text("102 ")
        (tmp_path / "102/task/102/children").write_text("")
    p1 = read_proc(Procfs(str(tmp_path)), 100, TERM)
    assert (p1.comm, p1.ns_pid, p1.sigwait, p1.handling()) == ("docker-init", 1, True, "waits")
    (server,) = p1.children
    assert (server.comm, server.caught, server.ignored, server.cmdline) == (
        "server.sh",
        True,
        False,
        "/bin/sh /bin/server.sh",
    )
    assert [c.comm for c in server.children] == ["sleep"]
    assert read_proc(Procfs(str(tmp_path)), 101, 3).ignored  # SIGQUIT is in SigIgn


def test_explain_record_and_text_escape_untrusted_names() -> None:
    evil = Proc(20, "sh\x1b[2J", 1, "/bin/sh -c x\x07", children=(SERVER,))
    s = snap(evil)
    container = {"id": "ab" * 32, "name": "web\x1b]0;x", "runtime": "docker", "image": "img"}
    rec = explain_record(container, s, predict(s), "2026-01-01T00:00:00.000000000Z")
    assert rec["type"] == "explain" and rec["graceful"] is False
    check_schema([rec])
    assert [(p["comm"], p["depth"], p["handles"]) for p in rec["processes"]] == [
        ("sh\x1b[2J", 0, "default"),
        ("server.sh", 1, "handler"),
        ("sleep", 2, "default"),
    ]
    text = render_text(rec)
    assert "\x1b" not in text and "\x07" not in text and "\\x1b" in text
    assert "NOT graceful (ignored_by_pid1)" in text


def test_help_has_examples_and_no_target_is_bad_input() -> None:
    run = [sys.executable, "-m", "sigtrace", "explain"]
    r = subprocess.run([*run, "--help"], capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 0 and "Examples:" in r.stdout and "10" in r.stdout
    r = subprocess.run(run, capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 2 and r.stderr == "sigtrace: explain needs --container or --pod\n"
