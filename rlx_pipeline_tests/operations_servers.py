"""A deployment as a person sets one up, and real servers for the operations tests: dagster-webserver,
dagster-daemon and PostgreSQL, on 127.0.0.1 and free ports, each stopped by its own process id. PostgreSQL and
chromium come from the system (`.ci/postgres-and-chromium.sh`); the helpers return None when they are absent so
the tests skip."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rlx_pipeline_tests.lake_fixtures import free_port

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def webhook_server(path: str = "/hook") -> Iterator[tuple[str, list[dict]]]:
    """A local Slack-compatible webhook: yields its URL (ending in ``path``) and the JSON bodies it received."""
    received: list[dict] = []

    class _Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's API
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}{path}", received
    finally:
        server.shutdown()


SQLITE_DAGSTER_YAML = """\
storage:
  sqlite:
    base_dir: {base}
run_coordinator:
  module: dagster.core.run_coordinator
  class: DefaultRunCoordinator
telemetry:
  enabled: false
"""


@dataclass(frozen=True)
class Deployment:
    """An instance directory (``DAGSTER_HOME`` with its ``dagster.yaml``), a data directory (``RLX_DATA_DIR``) and
    the environment the CLI, the daemon and the webserver run with, as a person's shell would hold them."""

    home: Path
    data: Path
    env: dict[str, str]

    def run(self, *cmd: str, timeout: float = 900) -> subprocess.CompletedProcess:
        """A command run from the repo in this deployment's environment, its output captured."""
        return subprocess.run(
            list(cmd), cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def rlx(self, *args: str) -> subprocess.CompletedProcess:
        """The ``rlx-pipeline`` CLI."""
        return self.run(sys.executable, "-c", "from rlx_pipeline.cli import main; main()", *args)

    def materialize(self, select: str, partition: str, timeout: float = 900) -> subprocess.CompletedProcess:
        """``dagster asset materialize``, as CI and users run it."""
        cmd = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "rlx_pipeline.definitions"]
        return self.run(*cmd, "--select", select, "--partition", partition, timeout=timeout)


def succeeded(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """``proc``, asserted to have exited 0 (else its output's tail is the failure message)."""
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def deployment(
    root: Path,
    *,
    home: Path | None = None,
    data: Path | None = None,
    instance_yaml: str | None = None,
    existing: bool = False,
    **settings: str | None,
) -> Deployment:
    """A deployment under ``root`` (``home/`` and ``data/`` unless given): a SQLite instance (``instance_yaml``
    to use another; ``existing`` to keep the one at ``home``), ``RLX_EXECUTOR=in_process`` (one process per run,
    so a run on a loaded 2-core machine takes seconds, not minutes) and ``settings`` over the process's
    environment (``None`` unsets one)."""
    home, data = home or root / "home", data or root / "data"
    if not existing:
        home.mkdir(parents=True, exist_ok=True)
        yaml_text = instance_yaml or SQLITE_DAGSTER_YAML.format(base=home / "storage")
        (home / "dagster.yaml").write_text(yaml_text)
    env = {**os.environ, "DAGSTER_HOME": str(home), "RLX_DATA_DIR": str(data), "RLX_EXECUTOR": "in_process"}
    for name, value in settings.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return Deployment(home, data, env)


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def pg_bin_dir() -> Path | None:
    """Directory holding initdb and pg_ctl: on PATH, or Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    return versions[-1] if versions and (versions[-1] / "initdb").exists() else None


def _wait_http(url: str, proc: subprocess.Popen, what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            assert proc.poll() is None, f"{what} exited with {proc.returncode}"
            assert time.monotonic() < deadline, f"{what} did not answer {url} within {timeout_s:.0f} s"
            time.sleep(0.5)


@dataclass
class Webserver:
    port: int
    deployment: Deployment

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def dagster_webserver(deployed: Deployment, log: Path) -> Iterator[Webserver]:
    """`dagster-webserver -m rlx_pipeline.definitions` on the deployment's instance, runs launched at once."""
    port = free_port()
    cmd = [sys.executable, "-m", "dagster_webserver", "-m", "rlx_pipeline.definitions"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*cmd, "-h", "127.0.0.1", "-p", str(port)],
            cwd=ROOT,
            env=deployed.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_http(f"http://127.0.0.1:{port}/server_info", proc, "dagster-webserver")
        yield Webserver(port, deployed)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Postgres:
    host: str
    port: int
    user: str
    db: str

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.db}"


@contextlib.contextmanager
def postgres_server(bin_dir: Path) -> Iterator[Postgres]:
    """A throw-away PostgreSQL cluster (trust auth, 127.0.0.1 only). As root, it runs as the `postgres` user:
    PostgreSQL refuses to run as root."""
    as_user: list[str] = []
    data = Path(tempfile.mkdtemp(prefix="rlx-pg-"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")  # created by Debian's postgresql package
        os.chown(data, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    run = lambda *args: subprocess.run([*as_user, *args], check=True, capture_output=True, cwd=data)  # noqa: E731
    try:
        run(str(bin_dir / "initdb"), "-D", str(data / "db"), "-U", "dagster", "--auth=trust", "-E", "UTF8")
        opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {data} -c fsync=off -c full_page_writes=off"
        run(
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data / "db"),
            "-o",
            opts,
            "-l",
            str(data / "log"),
            "-w",
            "start",
        )
        try:
            yield Postgres("127.0.0.1", port, "dagster", "postgres")
        finally:
            run(str(bin_dir / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "stop")
    finally:
        shutil.rmtree(data, ignore_errors=True)


def instance_yaml_from_repo(base: Path) -> str:
    """The repo's own ``dagster.yaml`` (the instance the README runs) with its storage moved under ``base``."""
    return (ROOT / "dagster.yaml").read_text().replace("base_dir: data/dagster", f"base_dir: {base}")


@contextlib.contextmanager
def dagster_daemon(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """`dagster-daemon run -m rlx_pipeline.definitions` in its own session (it starts a code server), stopped by
    its process group id. The instance storage must exist first (`dagster instance migrate`): a daemon racing
    the first writer of a fresh SQLite instance can die on "table already exists"."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dagster._daemon", "run", "-m", "rlx_pipeline.definitions"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
