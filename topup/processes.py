"""`topup serve --processes N`: N serving processes on one port, for a machine
with more cores than one Python process can use (each runs Python on one core
at a time; bench/scaleout measured a second process at about twice the
requests).

Each process binds the port with SO_REUSEPORT and the kernel spreads new
connections between them, so no process waits on another's accept. The parent
only reserves the port (bound, never listening, so it is never given a
connection), starts `topup serve --reuse-port` N times, restarts one that
dies, and on SIGTERM or Ctrl-C stops them all (SIGTERM, as a single `topup
serve` is stopped: a delivery cut short is leased and taken up again).

And where a serving process runs: each on one CPU (run_on_one_cpu), the N
processes on different ones.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)
RESTART_PAUSE_SECONDS = 1.0
STOP_SECONDS = 15  # after SIGTERM; a delivery cut short is leased, so taken up again


def shared_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port that other processes may bind too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def usable_cpus() -> list[int]:
    """The CPUs this process may run on, in order ([] where the system cannot say)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return []


def current_cpu() -> int | None:
    """The CPU this thread is on right now (Linux), else None."""
    try:
        after_name = Path("/proc/thread-self/stat").read_text().rsplit(")", 1)[1].split()
        return int(after_name[36])  # field 39, "processor"; the list starts at field 3
    except (OSError, IndexError, ValueError):
        return None


def run_on_one_cpu(cpu: int | None = None) -> int | None:
    """Keep every thread of this process, and each it starts later, on cpu
    (None: the one it is on now); the CPU, or None where nothing was done.

    Only one thread runs Python at a time, so a second CPU adds little to one
    process; but waitress hands every request between threads (its loop, a
    worker, the loop again), and where those threads sit on different CPUs each
    hand-off wakes the other CPU. On a virtual machine that is a trip through
    the hypervisor: one process at 16 connections served about a third of the
    pages the same process served kept on one CPU (README, "Budgets and
    numbers"). Where the system refuses (a container that forbids it), logged
    and left as it was."""
    if not hasattr(os, "sched_setaffinity"):  # not Linux: the kernel places threads
        return None
    if cpu is None:
        cpu = current_cpu()
        if cpu is None:
            cpu = (usable_cpus() or [0])[0]
    try:
        for thread in os.listdir("/proc/self/task"):  # the ones already running
            os.sched_setaffinity(int(thread), {cpu})
    except (OSError, ValueError) as exc:
        log.warning("could not keep this process on CPU %s (%s); its threads may move "
                    "between CPUs", cpu, exc)
        return None
    return cpu


def place(choice: str | None) -> int | None:
    """Where `--cpu` says: "all" leaves the threads to the kernel, a number
    keeps them on that CPU, None on the one this process is on now."""
    if choice == "all":
        return None
    return run_on_one_cpu(int(choice) if choice else None)


def follow_parent() -> None:
    """In a serving process: stop (SIGTERM) if the parent is gone, so a
    parent killed outright leaves no process serving on its own."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="follow-parent").start()


class Children:
    """The serving processes, each started again if it dies until stop()."""

    def __init__(self, commands: list[list[str]]):
        self.commands = commands  # one per slot
        self.running: list[subprocess.Popen] = []  # one per slot
        self.started: list[subprocess.Popen] = []  # every one, for stop()
        self.stopping = threading.Event()

    def start_one(self, slot: int) -> subprocess.Popen:
        # Its own session: a terminal's Ctrl-C reaches the parent only, which
        # stops the processes itself (instead of racing to restart them).
        child = subprocess.Popen(self.commands[slot], stdout=subprocess.PIPE, text=True,
                                 start_new_session=True)
        self.started.append(child)
        line = child.stdout.readline()  # "topup is serving on ...": it listens now
        if "serving on" not in line:
            child.kill()
            child.wait()
            raise RuntimeError(f"a serving process did not start: {line.strip()!r}")
        threading.Thread(target=child.stdout.read, daemon=True).start()  # never a full pipe
        return child

    def watch(self) -> None:
        """Until stop(): replace each process that exits."""
        while not self.stopping.wait(0.5):
            for index, child in enumerate(self.running):
                if child.poll() is None or self.stopping.is_set():
                    continue
                log.error("serving process %d exited with %s; starting another",
                          child.pid, child.returncode)
                self.started.remove(child)
                if self.stopping.wait(RESTART_PAUSE_SECONDS):
                    return
                try:
                    self.running[index] = self.start_one(index)
                except Exception as exc:  # tried again on the next round
                    if not self.stopping.is_set():
                        log.error("could not start a serving process: %s", exc)

    def stop(self) -> None:
        """Every process started, one still starting too: SIGTERM, then SIGKILL."""
        self.stopping.set()
        for child in self.started:
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + STOP_SECONDS
        for child in self.started:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("serving process %d did not stop in time; killed", child.pid)
                child.kill()
                child.wait()


def serve_processes(app, host: str, port: int, count: int, argv: list[str],
                    cpus: list[int] | None) -> None:
    """Serve with count processes of `topup serve` (argv: its other options),
    the k-th on cpus[k % len(cpus)]; None or []: wherever the kernel puts them."""
    import click

    if app.config["RATELIMIT_ENABLED"] and app.config["RATELIMIT_STORAGE_URI"] == "memory://":
        log.warning("each of the %d processes counts rate limits on its own: set "
                    "RATELIMIT_STORAGE_URI to Redis to share them", count)
    reserved = shared_socket(host, port)  # holds the port (and learns it, for --port 0)
    bound = reserved.getsockname()[1]
    command = [sys.executable, "-m", "topup.cli", "serve", "--reuse-port",
               "--port", str(bound), *argv]
    children = Children([command + ["--cpu", str(cpus[slot % len(cpus)]) if cpus else "all"]
                         for slot in range(count)])
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        for slot in range(count):
            children.running.append(children.start_one(slot))
        watcher = threading.Thread(target=children.watch, daemon=True)
        watcher.start()
        log.info("%d serving processes started", count)
        click.echo(f"topup is serving on http://{host}:{bound}/")  # the line `topup serve` prints
        sys.stdout.flush()
        stop.wait()
    finally:
        children.stop()
        reserved.close()
