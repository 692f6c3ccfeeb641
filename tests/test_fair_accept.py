"""Workers spread new connections evenly (`bentos.fair_accept`) and run on cores of their own (`bentos.cores`)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from bentos import fair_accept
from bentos.cores import pin_to_core, should_pin, usable_cores
from bentos.fair_accept import ConnectionShares, FairAcceptLoop, shares_path


def test_shares_count_each_serving_workers_connections_in_one_file(tmp_path):
    path = tmp_path / "shares"
    first, second = ConnectionShares(path, 2, 0), ConnectionShares(path, 2, 1)
    first.serving()
    first.opened()
    assert not first.ahead()  # the other worker is not serving yet (loading its model): nobody waits for it
    second.serving()
    assert first.ahead() and not second.ahead()  # 1 against 0
    first.opened()
    second.opened()
    assert (first.mine(), second.mine()) == (2, 1)
    assert first.ahead() and not second.ahead()
    first.closed()
    assert not first.ahead() and not second.ahead()  # 1 and 1
    second.stopped()
    second.closed()  # a connection outliving its server's stop
    assert second.mine() == 0 and not first.ahead()
    restarted = ConnectionShares(path, 2, 0)
    assert restarted.mine() == 0 and not second.ahead()  # a restarted worker serves nothing yet
    with pytest.raises(ValueError, match="worker index"):
        ConnectionShares(path, 2, 2)


def test_shares_files_of_servers_gone_are_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(fair_accept.tempfile, "gettempdir", lambda: str(tmp_path))
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    stale = shares_path(finished.pid)
    stale.write_bytes(b"\0" * 16)
    live = shares_path(os.getpid())
    live.write_bytes(b"\0" * 16)
    shares_path(os.getpid())  # each worker's start sweeps the folder
    assert not stale.exists() and live.exists()


class Worker(threading.Thread):
    """One server worker: a `FairAcceptLoop` serving the shared listening socket in a thread."""

    def __init__(self, listening: socket.socket, shares: ConnectionShares) -> None:
        super().__init__(daemon=True)
        self.loop = FairAcceptLoop()
        self.loop.shares = shares
        self.sock = listening.dup()
        self.accepted = 0
        self.ready = threading.Event()

    def run(self) -> None:
        worker = self

        class Count(asyncio.Protocol):
            def connection_made(self, transport):
                worker.accepted += 1

        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(self.loop.create_server(Count, sock=self.sock))
        self.ready.set()
        self.loop.run_forever()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.join(5)


@pytest.fixture
def listening():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield sock
    sock.close()


def connect(port: int, workers: list[Worker], clients: list[socket.socket]) -> None:
    """One more client, returning once a worker has accepted it."""
    before = sum(w.accepted for w in workers)
    clients.append(socket.create_connection(("127.0.0.1", port)))
    deadline = time.monotonic() + 10
    while sum(w.accepted for w in workers) == before:
        assert time.monotonic() < deadline, "no worker accepted the connection"
        time.sleep(0.001)


def test_a_worker_holding_more_connections_leaves_new_ones_to_the_other(tmp_path, listening, monkeypatch):
    monkeypatch.setattr(fair_accept, "MAX_DEFER_S", 5.0)  # a slow machine must not turn a deferral into an accept
    path = tmp_path / "shares"
    busy, idle = ConnectionShares(path, 2, 0), ConnectionShares(path, 2, 1)
    busy.serving()
    for _ in range(3):
        busy.opened()  # three connections the idle worker does not have
    workers = [Worker(listening, busy), Worker(listening, idle)]
    for worker in workers:
        worker.start()
        worker.ready.wait(5)
    clients: list[socket.socket] = []
    try:
        for _ in range(3):
            connect(listening.getsockname()[1], workers, clients)
        # With plain loops both workers race for each connection (all three to one side: 1 in 8).
        assert (workers[0].accepted, workers[1].accepted) == (0, 3)
        assert idle.mine() == 3
        for _ in range(4):  # level now: they alternate
            connect(listening.getsockname()[1], workers, clients)
        assert abs(busy.mine() - idle.mine()) <= 1
        for client in clients:
            client.close()
        deadline = time.monotonic() + 10
        while idle.mine() > 0 or busy.mine() > 3:  # closed connections are counted out
            assert time.monotonic() < deadline, (busy.mine(), idle.mine())
            time.sleep(0.005)
        assert (busy.mine(), idle.mine()) == (3, 0)  # only the three held before
    finally:
        for worker in workers:
            worker.stop()


def take(listening: socket.socket) -> socket.socket:
    """Accept one waiting connection as another worker would (the shared socket is non-blocking)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return listening.accept()[0]
        except BlockingIOError:
            assert time.monotonic() < deadline, "no connection to take"
            time.sleep(0.001)


def test_each_new_connection_gets_its_own_deferral(tmp_path, listening, monkeypatch):
    """A deferral that ended because another worker took the connection does not count against
    the next connection, however much later it comes."""
    monkeypatch.setattr(fair_accept, "MAX_DEFER_S", 1.0)
    path = tmp_path / "shares"
    busy, other = ConnectionShares(path, 2, 0), ConnectionShares(path, 2, 1)
    busy.serving()
    busy.opened()
    other.serving()  # holds none; this test takes connections in its place
    worker = Worker(listening, busy)
    worker.start()
    worker.ready.wait(5)
    port = listening.getsockname()[1]
    held: list[socket.socket] = []
    try:
        for _ in range(2):
            held.append(socket.create_connection(("127.0.0.1", port)))
            time.sleep(0.3)  # well within a deferral: the busy worker leaves it waiting
            assert worker.accepted == 0
            held.append(take(listening))
            time.sleep(1.5)  # longer than a deferral lasts
    finally:
        for connection in held:
            connection.close()
        worker.stop()


def test_a_burst_is_counted_as_it_is_accepted(tmp_path, listening, monkeypatch):
    """Two connections waiting together: the worker takes one and, already ahead by it, leaves the
    other for the worker holding fewer (counted only once its protocol started, it took both)."""
    monkeypatch.setattr(fair_accept, "MAX_DEFER_S", 5.0)
    path = tmp_path / "shares"
    worker_shares, other = ConnectionShares(path, 2, 0), ConnectionShares(path, 2, 1)
    worker_shares.serving()
    other.serving()  # holds none; this test takes a connection in its place
    port = listening.getsockname()[1]
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]  # both wait before the worker wakes
    worker = Worker(listening, worker_shares)
    worker.start()
    worker.ready.wait(5)
    try:
        deadline = time.monotonic() + 10
        while worker.accepted == 0:
            assert time.monotonic() < deadline, "the worker accepted nothing"
            time.sleep(0.001)
        time.sleep(0.3)  # well within a deferral
        assert worker.accepted == 1 and worker_shares.mine() == 1
        held.append(take(listening))
        for connection in held:
            connection.close()
        deadline = time.monotonic() + 10
        while worker_shares.mine() > 0:  # a closed connection is counted out
            assert time.monotonic() < deadline, worker_shares.mine()
            time.sleep(0.005)
    finally:
        for connection in held:
            connection.close()
        worker.stop()


@pytest.mark.parametrize("other_serving", [True, False])
def test_a_connection_is_never_left_waiting_for_a_worker_that_does_not_take_it(tmp_path, listening, monkeypatch,
                                                                               other_serving):
    """Another worker holding fewer but not accepting: taken after `MAX_DEFER_S`; another worker
    not serving yet (still loading its model): not waited for at all."""
    monkeypatch.setattr(fair_accept, "MAX_DEFER_S", 0.05 if other_serving else 30.0)
    path = tmp_path / "shares"
    ahead, other = ConnectionShares(path, 2, 0), ConnectionShares(path, 2, 1)
    ahead.serving()
    ahead.opened()
    if other_serving:
        other.serving()  # with no connections, and no loop to take any
    worker = Worker(listening, ahead)
    worker.start()
    worker.ready.wait(5)
    clients: list[socket.socket] = []
    try:
        started = time.monotonic()
        connect(listening.getsockname()[1], [worker], clients)
        assert worker.accepted == 1 and ahead.mine() == 2
        assert time.monotonic() - started < 10  # far below the 30 s a wait for the absent worker would take
    finally:
        for client in clients:
            client.close()
        worker.stop()


def test_workers_are_pinned_only_when_there_is_a_core_for_each():
    cores = len(usable_cores())
    assert should_pin(cores, None) and should_pin(1, 1)
    assert not should_pin(cores + 1, None)
    assert not should_pin(1, 2)  # an explanation sharded over two devices needs two cores
    assert should_pin(cores, None, "auto") and not should_pin(cores + 1, None, "auto")
    assert should_pin(1, None, "auto") == (cores == 1)  # a one-worker server on a larger machine stays free
    assert not should_pin(cores, 2, "auto")
    assert not should_pin(cores, None, False) and not should_pin(1, 1, False)


def test_pinning_moves_every_thread_of_the_process_to_one_core():
    script = (
        "import os, threading\n"
        "from bentos.cores import pin_to_core, usable_cores\n"
        "cores = usable_cores()\n"
        "started = threading.Event(); done = threading.Event()\n"
        "helper = threading.Thread(target=lambda: (started.set(), done.wait())); helper.start(); started.wait()\n"
        "core = pin_to_core(1)\n"
        "assert core == cores[1 % len(cores)], (core, cores)\n"
        "assert os.sched_getaffinity(0) == {core}\n"
        "assert os.sched_getaffinity(helper.native_id) == {core}  # a thread started before\n"
        "done.set(); helper.join(); print('pinned', core)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("pinned")
