"""Process exits with their wait status, from the kernel's process-events connector.

The tracefs events carry no exit code; proc_exit_connector() sends each exiting task's
exit_code (the wait status: `signal->group_exit_code` after a group exit) and a CLOCK_MONOTONIC
timestamp. Opening it needs CAP_NET_ADMIN and the host's network namespace (the connector
exists only there). The socket is pyroute2's; the messages are decoded here with struct, as
every process event on the host passes through (decode() is pure and tested).
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import time
from typing import NamedTuple, cast

from sigtrace import features
from sigtrace.errors import BackendError, PrivilegeError

PROC_EVENT_NONE = 0x0
PROC_EVENT_EXIT = 0x80000000
_NLMSG = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_CN_MSG = struct.Struct("=IIIIHH")  # idx, val, seq, ack, len, flags
_EVENT_HEAD = struct.Struct("=IIQ")  # what, cpu, timestamp_ns
_EXIT = struct.Struct("=IIII")  # pid, tgid, exit_code, exit_signal (then parent pid/tgid)
_ACK = struct.Struct("=I")  # err
CN_IDX_PROC = 1
CN_VAL_PROC = 1
NLMSG_DONE = 3
PROC_CN_MCAST_LISTEN = 1
ACK_TIMEOUT_S = 1.0


class ProcExit(NamedTuple):
    ts_ns: int
    cpu: int
    tid: int
    tgid: int
    exit_code: int  # wait status


def decode(data: bytes) -> tuple[list[ProcExit], list[tuple[int, int, int]]]:
    """One recv() of netlink messages → (exits, acks as (cn seq, cn ack, err)). Pure."""
    exits: list[ProcExit] = []
    acks: list[tuple[int, int, int]] = []
    off = 0
    while off + _NLMSG.size <= len(data):
        length = _NLMSG.unpack_from(data, off)[0]
        if length < _NLMSG.size or off + length > len(data):
            break
        body = off + _NLMSG.size
        if length >= _NLMSG.size + _CN_MSG.size + _EVENT_HEAD.size:
            _idx, _val, seq, ack, _len, _flags = _CN_MSG.unpack_from(data, body)
            ev = body + _CN_MSG.size
            what, cpu, ts = _EVENT_HEAD.unpack_from(data, ev)
            payload = ev + _EVENT_HEAD.size
            if what == PROC_EVENT_EXIT and payload + _EXIT.size <= off + length:
                tid, tgid, code, _sig = _EXIT.unpack_from(data, payload)
                exits.append(ProcExit(ts, cpu, tid, tgid, code))
            elif what == PROC_EVENT_NONE and payload + _ACK.size <= off + length:
                acks.append((seq, ack, _ACK.unpack_from(data, payload)[0]))
        off += (length + 3) & ~3  # NLMSG_ALIGN
    return exits, acks


class ProcEvents:
    """A listening process-events socket; `read()` hands over the exits that arrived."""

    def __init__(self) -> None:
        from pyroute2 import ProcEventSocket

        self.overruns = 0  # times the socket overflowed (exits lost)
        try:
            self.sock = ProcEventSocket()
        except OSError as exc:
            raise BackendError(f"process-events connector: {exc.strerror or exc}") from exc
        try:
            try:
                self.sock.bind()
            except KeyError:  # pyroute2's word for "every bind() failed": EPERM here
                raise PrivilegeError(
                    "process-events connector: cannot listen (missing CAP_NET_ADMIN)"
                ) from None
            self._listen()
        except BaseException:
            self.close()
            raise

    def _send(self, payload: bytes, ack: int) -> None:
        cn = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, ack, len(payload), 0) + payload
        try:
            self.sock.sendto(_NLMSG.pack(_NLMSG.size + len(cn), NLMSG_DONE, 0, 0, 0) + cn, (0, 0))
        except OSError as exc:  # ECONNREFUSED outside the host's network namespace
            raise BackendError(
                f"process-events connector: {exc.strerror or exc} "
                "(it needs the host's network namespace)"
            ) from exc

    def _listen(self) -> None:
        ack = os.getpid() & 0x7FFFFFFF
        self._send(struct.pack("=I", PROC_CN_MCAST_LISTEN), ack)
        self._wait_ack(ack + 1)
        # Since 6.6 a listener can then narrow itself to exits (struct proc_input), so the
        # host's forks and execs never wake us. That request's own ack is filtered out too.
        if (features.kernel_version() or (0, 0)) >= (6, 6):
            self._send(struct.pack("=II", PROC_CN_MCAST_LISTEN, PROC_EVENT_EXIT), ack)

    def _wait_ack(self, want: int) -> None:
        deadline = time.monotonic() + ACK_TIMEOUT_S
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([self.sock.fileno()], [], [], left)[0]:
                break
            for _seq, ack, err in decode(self.sock.recv(1 << 16))[1]:
                if ack == want:
                    if err:
                        raise BackendError(
                            f"process-events connector refused to listen: {os.strerror(err)}"
                        )
                    return
        raise BackendError("process-events connector did not answer")

    def fileno(self) -> int:
        return cast(int, self.sock.fileno())  # pyroute2's socket: untyped

    def read(self) -> list[ProcExit]:
        out: list[ProcExit] = []
        while True:
            try:
                data = self.sock.recv(1 << 16, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return out
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    # The socket overflowed: exits were lost; the next recv goes on.
                    self.overruns += 1
                    continue
                raise BackendError(f"process-events connector: {exc.strerror}") from exc
            if not data:
                return out
            out.extend(decode(data)[0])

    def close(self) -> None:
        sock = getattr(self, "sock", None)
        if sock is not None:
            sock.close()
            self.sock = None
