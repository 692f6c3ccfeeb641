"""An event loop that spreads new connections evenly over a server's workers.

BentoML's workers all listen on one inherited socket, and uvloop (like asyncio's own loop)
accepts every connection waiting when that socket becomes readable: the worker that wakes first
takes a whole burst of keep-alive clients (16 clients split 16/0 or 15/1 over two workers) and
the other worker's core idles for as long as those connections live. Here each worker publishes
how many connections it holds (`ConnectionShares`, a small file every worker of the server
maps); a worker holding more than another leaves the waiting connection to it for a moment, and
takes it after `MAX_DEFER_S` all the same (a worker that stopped answering never strands one).
A connection counts from the moment it is accepted: counted only once its protocol started (a
loop iteration or two later), a burst arriving together was all taken by the first worker awake
before its count moved, and 16 clients split 9/7 about every other time.
"""

from __future__ import annotations

import asyncio
import mmap
import os
import select
import tempfile
import time
from pathlib import Path

RETRY_S = 0.001
MAX_DEFER_S = 0.02
SLOT_BYTES = 8


class ConnectionShares:
    """Open connections per worker of one server: worker ``index`` (0-based) writes only its own
    slot, which holds 0 while the worker is not serving (starting, stopped) and its connections
    + 1 while it is, so nobody waits for a worker that is still loading its model."""

    def __init__(self, path: Path, workers: int, index: int) -> None:
        if not 0 <= index < workers:
            raise ValueError(f"worker index {index} is not in 0..{workers - 1}")
        size = SLOT_BYTES * workers
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(descriptor).st_size < size:
                os.ftruncate(descriptor, size)
            self._map = mmap.mmap(descriptor, size)
        finally:
            os.close(descriptor)
        self._slots = memoryview(self._map).cast("q")  # [workers]
        self.index = index
        self._slots[index] = 0  # a restarted worker is not serving yet

    def serving(self) -> None:
        if self._slots[self.index] == 0:
            self._slots[self.index] = 1

    def stopped(self) -> None:
        self._slots[self.index] = 0

    def opened(self) -> None:
        self._slots[self.index] += 1

    def closed(self) -> None:
        if self._slots[self.index] > 1:  # connections outliving the server's stop are not counted
            self._slots[self.index] -= 1

    def mine(self) -> int:
        return max(self._slots[self.index] - 1, 0)

    def ahead(self) -> bool:
        """Whether another serving worker holds fewer connections than this one."""
        mine = self._slots[self.index]
        return any(0 < slot < mine for k, slot in enumerate(self._slots) if k != self.index)


def shares_path(server_pid: int) -> Path:
    """The shares file of the server whose arbiter is ``server_pid``; files of servers gone are removed."""
    folder = Path(tempfile.gettempdir()) / f"sprout-connection-shares-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    for stale in folder.glob("*"):
        try:
            os.kill(int(stale.name), 0)
        except (ValueError, ProcessLookupError):
            stale.unlink(missing_ok=True)
        except PermissionError:
            pass
    return folder / str(server_pid)


class FairAcceptLoop(asyncio.SelectorEventLoop):
    """asyncio's selector loop, accepting one connection per readiness event, and none for a
    moment while another worker holds fewer."""

    shares: ConnectionShares | None = None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._deferring_since: float | None = None

    def _start_serving(self, protocol_factory, sock, *args, **kwargs) -> None:
        if self.shares is not None:
            self.shares.serving()
        super()._start_serving(protocol_factory, sock, *args, **kwargs)

    def _stop_serving(self, sock) -> None:
        if self.shares is not None:
            self.shares.stopped()
        super()._stop_serving(sock)

    def _accept_connection(self, protocol_factory, sock, sslcontext=None, server=None, backlog=100, *args, **kwargs):
        shares = self.shares
        if shares is not None and shares.ahead():
            now = time.monotonic()
            self._deferring_since = self._deferring_since or now
            if now - self._deferring_since < MAX_DEFER_S:
                listening = sock.fileno()
                self._remove_reader(listening)
                self.call_later(RETRY_S, self._listen_again, listening, protocol_factory, sock, sslcontext, server,
                                backlog, *args)
                return None
        self._deferring_since = None
        # ``backlog`` bounds only the accept loop here (the socket's listen backlog is set already)
        return super()._accept_connection(protocol_factory, sock, sslcontext, server, 1, *args, **kwargs)

    def _accept_connection2(self, protocol_factory, conn, extra, *args, **kwargs):
        """Called as the connection is accepted, to make the coroutine that starts its protocol:
        counted here, at once, so the next readiness event already sees it."""
        if self.shares is None:
            return super()._accept_connection2(protocol_factory, conn, extra, *args, **kwargs)
        connection = CountedConnection(protocol_factory, self.shares)
        return connection.started(super()._accept_connection2(connection.factory, conn, extra, *args, **kwargs))

    def _listen_again(self, listening, protocol_factory, sock, sslcontext, server, backlog, *args) -> None:
        if sock.fileno() != listening or (server is not None and not server.is_serving()):
            return
        if not select.select([listening], [], [], 0)[0]:
            self._deferring_since = None  # another worker took it: the next connection gets a deferral of its own
        self._add_reader(listening, self._accept_connection, protocol_factory, sock, sslcontext, server, backlog, *args)


class CountedConnection:
    """One accepted connection in ``shares``: counted from the accept until its protocol loses
    it, or until its protocol failed to start."""

    def __init__(self, protocol_factory, shares: ConnectionShares) -> None:
        self.protocol_factory, self.shares = protocol_factory, shares
        self.made = False  # its protocol started
        shares.opened()
        self.counted = True

    def factory(self):
        protocol = self.protocol_factory()
        made, lost = protocol.connection_made, protocol.connection_lost

        def connection_made(transport):
            self.made = True
            made(transport)

        def connection_lost(error):
            self.uncount()
            lost(error)

        protocol.connection_made, protocol.connection_lost = connection_made, connection_lost
        return protocol

    async def started(self, starting) -> None:
        """Await ``starting`` (the loop's own coroutine); a connection whose protocol never started is counted out."""
        try:
            await starting
        finally:
            if not self.made:
                self.uncount()

    def uncount(self) -> None:
        if self.counted:
            self.counted = False
            self.shares.closed()


def fair_accept_loop_factory(use_subprocess: bool = False):
    """uvicorn's loop-factory signature."""
    return FairAcceptLoop


def use_fair_accept(workers: int, index: int, server_pid: int) -> None:
    """Make uvicorn's default ("auto") loop this one, for worker ``index`` (0-based) of ``workers``
    of the server whose arbiter is ``server_pid``; call before the worker starts its server."""
    from uvicorn import config

    FairAcceptLoop.shares = ConnectionShares(shares_path(server_pid), workers, index)
    config.LOOP_FACTORIES["auto"] = f"{__name__}:fair_accept_loop_factory"
