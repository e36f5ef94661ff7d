"""Real services for the fault suite: a PostgreSQL that can be stopped and started again,
and `beliefscope serve` in its own process."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg

from tests import pgserver


@dataclass
class RestartablePg:
    """A private server (never the shared one on 5432): `stop` crashes it (immediate mode,
    like a killed postmaster), `start` brings it back with its original options."""

    url: str
    datadir: Path
    argv: list[str]  # the postmaster's command line, from postmaster.opts

    def _pg_ctl(self, *args: str) -> None:
        as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        pg_ctl = str(Path(self.argv[0]).with_name("pg_ctl"))
        done = subprocess.run(
            [*as_user, pg_ctl, "-D", str(self.datadir), *args], capture_output=True, text=True
        )
        assert done.returncode == 0, f"pg_ctl {args}: {done.stderr[-500:]}"

    def stop(self) -> None:
        self._pg_ctl("-m", "immediate", "-w", "stop")

    def start(self) -> None:
        options = shlex.join(a for a in self.argv[3:])  # after `postgres -D <datadir>`
        log = str(self.datadir.parent / "server.log")
        self._pg_ctl("-o", options, "-l", log, "-w", "-t", "60", "start")

    def running(self) -> bool:
        return pgserver.answers(self.url) is None


@contextmanager
def restartable_pg() -> Iterator[RestartablePg]:
    with pgserver.throwaway_server() as url:
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
            datadir = Path(str(conn.execute("SHOW data_directory").fetchone()[0]))  # type: ignore[index]
        argv = shlex.split((datadir / "postmaster.opts").read_text())
        assert argv[1:3] == ["-D", str(datadir)], argv
        server = RestartablePg(url, datadir, argv)
        try:
            yield server
        finally:
            if not server.running():
                server.start()  # the throwaway server's own teardown stops it


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Server:
    base: str
    """`http://127.0.0.1:PORT`"""
    pid: int
    """The server process itself (uvicorn runs in it), for its memory."""


@contextmanager
def served(store_url: str, home: Path) -> Iterator[Server]:
    """`beliefscope serve` (API only) on a free loopback port. Its stderr goes to
    `home/serve.log`, not a pipe nobody reads, which a long run would fill and block on."""
    port = free_port()
    env = {**os.environ, "BELIEFSCOPE_HOME": str(home), "BELIEFSCOPE_STORE": store_url}
    cmd = [
        sys.executable,
        "-m",
        "beliefscope.cli",
        "serve",
        "--no-dashboard",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    home.mkdir(parents=True, exist_ok=True)
    log = home / "serve.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text(errors="replace")[-2000:]
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not come up in 120 s"
            time.sleep(0.2)
        yield Server(base, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def ingest_cmd(run: Path, replay: Path, *variants: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "beliefscope.cli",
        "ingest",
        str(run),
        "--replay",
        str(replay),
        "--batch-size",
        "1",
        *(f"--variant={v}" for v in variants),
    ]
