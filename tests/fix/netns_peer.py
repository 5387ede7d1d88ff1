"""Runs one QuickFIX example program in a loopback-only network namespace of its own, and
relays one TCP port on the host's 127.0.0.1 to it.

QuickFIX's ``executor`` and ``ordermatch`` listen on every interface and have no setting to
change that. This process therefore:

1. binds its relay listener on the host's 127.0.0.1 (port 0: any free port);
2. moves itself into a new network namespace (``unshare(CLONE_NEWNET)``) and brings its ``lo``
   up. The listener it already holds stays in the host namespace; everything it creates from
   now on, the peer included, lives in the new one, which has nothing but loopback;
3. starts the peer, waits until it accepts connections, and prints ``PORT <n>`` then
   ``READY`` on stdout;
4. relays each host connection to the peer's port inside the namespace.

So the test process, the Temporal worker and the database stay where they are, and the peer is
reachable only through 127.0.0.1 on the host. Root (or CAP_SYS_ADMIN) is needed for step 2.

Commands on stdin, one per line: ``drop`` closes every relayed connection (a network cut; the
peer lives on), ``kill`` stops the peer (SIGKILL) and drops connections, ``start`` starts it
again, ``say TEXT`` writes TEXT as a line to the peer's stdin (the suite's venue takes commands
there), ``quit`` ends everything. End of stdin (the parent died) and the deadline end it too.
The namespace disappears with this process and its peer.

    python -m tests.fix.netns_peer --peer-port 5001 --workdir DIR --deadline-s 600 \
        -- .tools/fix-peers/ordermatch DIR/ordermatch.cfg
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import queue
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

CLONE_NEWNET = 0x40000000


def enter_new_network_namespace() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"unshare(CLONE_NEWNET) failed: {os.strerror(errno)}")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


class Peer:
    def __init__(self, argv: list[str], workdir: Path, port: int) -> None:
        self._argv = argv
        self._workdir = workdir
        self._port = port
        self._process: subprocess.Popen[bytes] | None = None
        self._starts = 0

    def start(self, timeout_s: float = 10) -> None:
        self._starts += 1
        log = (self._workdir / f"peer-{self._starts}.log").open("wb")
        # ordermatch reads commands from stdin and spins when it closes: keep it a pipe.
        self._process = subprocess.Popen(
            self._argv, cwd=self._workdir, stdin=subprocess.PIPE, stdout=log, stderr=log
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"peer exited with {self._process.returncode}; see {log.name}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self._port)) == 0:
                    return
            time.sleep(0.02)
        raise TimeoutError(f"peer did not listen on {self._port} within {timeout_s} s")

    def say(self, text: str) -> None:
        if self._process is not None and self._process.stdin is not None:
            self._process.stdin.write(text.encode() + b"\n")
            self._process.stdin.flush()

    def stop(self, *, kill: bool = False) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        if not kill and process.stdin is not None:
            # ordermatch ends on "#quit"; executor ignores stdin and is stopped below.
            with contextlib.suppress(OSError):
                process.stdin.write(b"#quit\n")
                process.stdin.flush()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=1)
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)


class Relay:
    def __init__(self, listener: socket.socket, port: int) -> None:
        self._listener = listener
        self._port = port
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._closed = threading.Event()

    def serve(self) -> None:
        while not self._closed.is_set():
            ready, _, _ = select.select([self._listener], [], [], 0.2)
            if not ready:
                continue
            try:
                outer, _ = self._listener.accept()
            except OSError:
                return
            inner = socket.socket()
            if inner.connect_ex(("127.0.0.1", self._port)) != 0:
                inner.close()
                outer.close()
                continue
            for sock in (outer, inner):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._open.update((outer, inner))
            threading.Thread(target=self._pump, args=(outer, inner), daemon=True).start()
            threading.Thread(target=self._pump, args=(inner, outer), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        self._close_pair(source, target)

    def _close_pair(self, *socks: socket.socket) -> None:
        with self._lock:
            for sock in socks:
                self._open.discard(sock)
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def drop(self) -> None:
        with self._lock:
            socks = list(self._open)
        self._close_pair(*socks)

    def close(self) -> None:
        self._closed.set()
        self.drop()
        self._listener.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peer-port", type=int, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--deadline-s", type=float, default=600)
    parser.add_argument("command", nargs="+", help="the peer's command line, after --")
    args = parser.parse_args()

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    enter_new_network_namespace()
    peer = Peer(args.command, args.workdir, args.peer_port)
    relay = Relay(listener, args.peer_port)
    commands: queue.SimpleQueue[str] = queue.SimpleQueue()

    def read_commands() -> None:
        for line in sys.stdin:
            commands.put(line.strip())
        commands.put("quit")

    try:
        peer.start()
        threading.Thread(target=relay.serve, daemon=True).start()
        threading.Thread(target=read_commands, daemon=True).start()
        print(f"PORT {listener.getsockname()[1]}", flush=True)
        print("READY", flush=True)
        deadline = time.monotonic() + args.deadline_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                command = commands.get(timeout=left)
            except queue.Empty:
                break
            if command == "quit":
                break
            if command == "drop":
                relay.drop()
            elif command == "kill":
                peer.stop(kill=True)
                relay.drop()
            elif command == "start":
                peer.start()
            elif command.startswith("say "):
                peer.say(command.removeprefix("say "))
            print(f"OK {command}", flush=True)
    finally:
        relay.close()
        peer.stop()


if __name__ == "__main__":
    main()
