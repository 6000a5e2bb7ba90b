"""Assembles a run from a config: backend choice, how processes are named, which containers
are followed. Shared by `sigtrace` and `sigtrace daemon`."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Mapping
from typing import Any

from sigtrace.config import TraceConfig
from sigtrace.containers.cache import ContainerCache
from sigtrace.log import Log
from sigtrace.output import Writer
from sigtrace.procfs import Procfs
from sigtrace.rawlog import ByteStream
from sigtrace.session import Session

FOLLOW_INTERVAL_S = 0.5
EXPIRE_INTERVAL_S = 1.0
STORY_INTERVAL_S = 0.25


def build_session(
    config: TraceConfig,
    backend_name: str,
    writer: Writer,
    *,
    log: Log | None = None,
    raw: ByteStream | None = None,
    stamp: Mapping[str, object] | None = None,
) -> Session:
    from sigtrace.backends import select
    from sigtrace.containers.cgroup_ids import CgroupIds
    from sigtrace.containers.select import ContainerSelector
    from sigtrace.enrich import ContainerDescriber, ContainerResolver, default_cache

    daemon = log is not None  # a daemon always logs its choice of backend
    log = log or Log("sigtrace")
    procfs = Procfs(config.proc_root)
    cgroups = CgroupIds(sys_root=config.sys_root)
    cache = default_cache()
    selector = ContainerSelector(
        cache, cgroups, procfs, config.containers, config.pods, config.wait
    )
    if selector.active:
        ids = selector.initial()
        config = dataclasses.replace(config, cgroup_ids=tuple(sorted(ids)))
        if not ids:
            for label in (s.label() for s in selector.selections):
                reason = selector.waiting.get(label)
                more = f" ({reason})" if reason else ""
                log.info(f"waiting for {label}{more}", selection=label)
    cls, why = select(backend_name, config)
    if backend_name == "auto" or config.verbose or daemon:
        log.info(why, backend=cls.name)
    backend = cls(config)
    backend.selector = selector if selector.active else None
    describer = ContainerDescriber(procfs, ContainerResolver(cgroups, procfs), cache)
    session = Session(backend, writer, why=why, raw=raw, stamp=stamp, describer=describer)
    session.observers.append(functools.partial(_forget_dead_container, cache))
    session.tickers.append((EXPIRE_INTERVAL_S, cache.expire, cache.expires_in))
    _add_stories(session, cache, config)
    if selector.active:

        def follow() -> None:
            new = selector.poll()
            if new:
                backend.add_cgroup_ids(new)
                log.info(f"following {len(new)} new cgroup(s)", cgroups=len(new))

        session.tickers.append((FOLLOW_INTERVAL_S, follow))
    return session


def _add_stories(session: Session, cache: ContainerCache, config: TraceConfig) -> None:
    """Termination stories: verdict records out through the session, the rest at the end."""
    from sigtrace.stories import StoryTracker

    tracker = StoryTracker(_StopSignals(cache), traced=config.signals)

    def emit(verdicts: list[dict[str, Any]]) -> None:
        for v in verdicts:
            if not is_pod_sandbox_story(cache, v):
                session.emit_extra(with_pod_grace(cache, v))

    def observe(rec: dict[str, Any]) -> None:
        if verdicts := tracker.feed(rec):  # most records: none
            emit(verdicts)

    session.observers.append(observe)
    session.tickers.append(
        (
            STORY_INTERVAL_S,
            lambda: emit(tracker.poll(session.clock.now_iso())),
            lambda: tracker.wake_in(session.clock.now_iso()),
        )
    )
    session.on_finish.append(lambda: emit(tracker.flush()))


def is_pod_sandbox_story(cache: ContainerCache, verdict: dict[str, Any]) -> bool:
    """A pod sandbox's (pause) end is the kubelet tearing the pod down after its containers
    stopped (`runc kill --all`: SIGKILL, no stop signal): part of their story, none of its own."""
    cid = (verdict.get("container") or {}).get("id")
    return isinstance(cid, str) and cache.get(cid).sandbox


def with_pod_grace(cache: ContainerCache, verdict: dict[str, Any]) -> dict[str, Any]:
    """A pod container's verdict gets its grace budget (sigtrace/kubegrace.py)."""
    from sigtrace.kubegrace import add_grace

    cid = (verdict.get("container") or {}).get("id")
    if cid:
        c = cache.get(cid)
        if c.pod is not None:
            add_grace(verdict, c.labels)
    return verdict


class _StopSignals(Mapping[str, int]):
    """Container id -> its image's stop signal, from the runtime record the cache holds."""

    def __init__(self, cache: ContainerCache) -> None:
        self.cache = cache

    def __getitem__(self, cid: str) -> int:
        from sigtrace.stories import stop_signal_number

        signo = stop_signal_number(self.cache.get(cid).stop_signal)
        if signo is None:
            raise KeyError(cid)
        return signo

    def __iter__(self) -> Iterator[str]:
        return iter(())  # looked up one id at a time, never listed

    def __len__(self) -> int:
        return 0


def _forget_dead_container(cache: ContainerCache, rec: dict[str, Any]) -> None:
    """A container's PID 1 exited: keep its name for the grace period, then drop it."""
    if rec.get("type") == "exit":
        proc = rec["process"]
        if proc.get("pid1") and proc.get("container"):
            cache.mark_gone(proc["container"]["id"])
