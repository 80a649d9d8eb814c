"""Fixtures for runner tests: a throwaway PostgreSQL server, one local Ray instance, tiny jobs.

The PostgreSQL server is started per session from the installed binaries (``initdb``,
``pg_ctl``; Debian/Ubuntu: ``apt-get install -y postgresql``) into a temporary directory, as
the ``postgres`` user when running as root, on a free 127.0.0.1 port, and stopped at the end.
Tests that need it are skipped, with the reason, when the binaries are missing.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from model_discovery.records import VerifyOptions

TINY = VerifyOptions(eval=False, probes=False, wandb=False, train_tokens=4096)
"""A real but tiny verification: two optimizer steps on the micro rung, no eval/probes/wandb."""


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_db_user(cmd: list[str]) -> list[str]:
    """Run ``cmd`` as ``postgres`` when we are root (initdb refuses to run as root)."""
    if os.geteuid() != 0:
        return cmd
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", "postgres", "--", *cmd]
    return ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(cmd)]


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """``postgresql+psycopg://`` URL of an empty database on a server private to this session."""
    initdb, pg_ctl, createdb = _pg_bin("initdb"), _pg_bin("pg_ctl"), _pg_bin("createdb")
    if not (initdb and pg_ctl and createdb):
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl, createdb) not installed; "
                    "apt-get install -y postgresql")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg not installed (pip install 'psycopg[binary]')")
    if os.geteuid() == 0:
        try:
            import pwd

            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and no 'postgres' user to run the server as")
    root = Path(tempfile.mkdtemp(prefix="modis-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        os.chown(root, pw.pw_uid, pw.pw_gid)
    port = _free_port()
    log = root / "server.log"

    def run(cmd: list[str], what: str) -> None:
        proc = subprocess.run(_as_db_user(cmd), capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            tail = " ".join((proc.stderr or proc.stdout).split())[-300:]
            pytest.skip(f"cannot {what} a test PostgreSQL server: {tail}")

    run([initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"], "initialise")
    run([pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
         f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections=100", "start"], "start")
    try:
        run([createdb, "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "modis_test"], "create a database on")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/modis_test"
    finally:
        subprocess.run(_as_db_user([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]),
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def fresh_pg_url(pg_url: str) -> Iterator[str]:
    """``pg_url`` with the tree tables dropped before and after the test."""
    from sqlalchemy import create_engine

    from model_discovery.evolution.schema import Base
    from model_discovery.evolution.tree import database_url

    def reset() -> None:
        engine = create_engine(database_url(pg_url))
        Base.metadata.drop_all(engine)
        engine.dispose()

    reset()
    yield pg_url
    reset()


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """One local Ray instance (2 CPUs, no dashboard) shared by the session's Ray tests."""
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    t0 = time.monotonic()
    ray.init(num_cpus=2, include_dashboard=False, namespace="modis-tests", log_to_driver=False)
    assert ray.is_initialized(), f"Ray did not start ({time.monotonic() - t0:.0f} s)"
    yield
    ray.shutdown()


@pytest.fixture
def tiny() -> VerifyOptions:
    """Options of a real but tiny verification (see ``TINY``)."""
    return TINY.model_copy()
