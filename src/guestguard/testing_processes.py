"""Real processes for the fault tests: worker processes whose email provider
logs every message it accepts, a gunicorn server with the repository's
configuration, and the waiting both need.

A test builds a :class:`FaultLab` through the ``fault_lab`` fixture
(``guestguard.testing``): the settings every process shares (the test's
database, a queue of its own), an app in the test process to queue messages
and read their rows, and the processes it starts, killed when the test ends.
"""
from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from sqlalchemy import select

from guestguard.notifications.models import Notification
from guestguard.notifications.services import queue_notification
from guestguard.plugins import hookimpl
from guestguard.testing import REPO_ROOT, command_env, scripted, wait_for

GUNICORN_CONF = REPO_ROOT / "gunicorn.conf.py"

WORKER = textwrap.dedent('''
    """`guestguard worker` (the same run_worker) with an email provider that
    logs each message it accepts. SEND_SECONDS: each send takes that long
    after accepting; HANG: it hangs there (the process is then stopped or
    killed before it could record the outcome)."""
    import json, os, sys, time
    from guestguard import make_config
    from guestguard.plugins import hookimpl
    from guestguard.tasks import run_worker

    settings = json.loads(sys.argv[1])
    log_path = sys.argv[2]

    def note(**fields):
        with open(log_path, "a") as log:
            log.write(json.dumps({"pid": os.getpid(), "at": time.time(), **fields}) + "\\n")

    class Provider:
        name = "faulty"
        channels = ("email",)

        def send(self, message):
            note(what="accepted", recipient=message.recipient, message_id=message.message_id)
            time.sleep(600 if os.environ.get("HANG") else float(os.environ.get("SEND_SECONDS", "0")))
            return "ok"

    class Plugin:
        @hookimpl
        def register_notification_providers(self, settings):
            return [Provider()]

    config = make_config(settings, environ={}, extra_plugins=[("faulty", Plugin())])
    config.make_wsgi_app()
    note(what="ready")
    sys.exit(run_worker(config.registry, int(os.environ.get("THREADS", "2"))))
''')


def read_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def kill(process: subprocess.Popen) -> None:
    """SIGKILL ``process`` and whatever it started (its session: a gunicorn
    master's workers too), if any is still running."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    if process.poll() is None:
        process.wait(10)


@contextlib.contextmanager
def killed_at_exit(process: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """The block uses ``process`` (started with ``start_new_session``);
    whatever happens, neither it nor its children are left running."""
    try:
        yield process
    finally:
        kill(process)


def stop(process: subprocess.Popen, signum: int = signal.SIGTERM, timeout: float = 60) -> tuple[int, float]:
    """Send ``signum`` and wait: the exit status and the seconds it took."""
    started = time.monotonic()
    process.send_signal(signum)
    status = process.wait(timeout)
    return status, time.monotonic() - started


class RefusingProvider:
    """The test process's own provider: it only queues, the workers send."""

    name = "faulty"
    channels = ("email",)

    def send(self, message):
        raise AssertionError("the test process sends nothing")

    @hookimpl
    def register_notification_providers(self, settings):
        return [self]


def lab_settings(db_url: str, queue_url: str, name: str, overrides: dict[str, str]) -> dict[str, str]:
    """What the test process and its workers share: the database, a queue
    of their own, and the provider that logs."""
    return {
        "app.env": "test", "app.base_url": "http://guestguard.test", "db.url": db_url,
        "huey.url": queue_url, "huey.immediate": "false", "huey.name": name,
        "notifications.email.provider": "faulty", "notifications.sms.provider": "",
        "passwords.memory_kib": "19456", "passwords.time_cost": "2", "passwords.parallelism": "1",
        **overrides,
    }


class FaultLab:
    """Worker processes on shared settings, the provider's log, and the
    notification rows, seen from the test."""

    def __init__(self, directory: Path, settings: dict[str, str], make_app):
        self.directory = directory
        self.settings = settings
        self.app = make_app(settings, plugins=[("faulty", RefusingProvider())])
        self.registry = self.app.app.registry
        self.registry["huey"].flush()
        self.log = directory / "provider.log"
        self.script = directory / "worker.py"
        self.script.write_text(WORKER)
        self.processes: list[subprocess.Popen] = []

    def queue(self, count: int, prefix: str = "guest") -> list[str]:
        """Queue ``count`` emails in one transaction (a fan-out); their recipients."""
        recipients = [f"{prefix}{n:04}@example.com" for n in range(count)]
        with scripted(self.registry) as env, env["request"].tm:
            for recipient in recipients:
                queue_notification(env["request"].ctx, channel="email", recipient=recipient,
                                   template="test_message", context={"base_url": "https://gg.example"})
        return recipients

    def start(self, *, threads: int = 2, send_seconds: float = 0.0, hang: bool = False,
              ready: bool = True) -> subprocess.Popen:
        """A worker process; with ``ready``, once its app is built."""
        variables = {"THREADS": str(threads), "SEND_SECONDS": str(send_seconds), **({"HANG": "1"} if hang else {})}
        index = len(self.processes)
        with (self.directory / f"worker-{index}.err").open("w") as errors:
            process = subprocess.Popen([sys.executable, str(self.script), json.dumps(self.settings), str(self.log)],
                                       env=command_env(**variables), stdout=subprocess.DEVNULL, stderr=errors,
                                       start_new_session=True)
        self.processes.append(process)
        if ready:
            wait_for(lambda: any(e["what"] == "ready" and e["pid"] == process.pid for e in read_log(self.log))
                     or process.poll() is not None, 60, "the worker to start")
            assert process.poll() is None, self.errors(process)
        return process

    def errors(self, process: subprocess.Popen) -> str:
        """What the worker wrote on stderr."""
        return (self.directory / f"worker-{self.processes.index(process)}.err").read_text()

    def accepted(self, pid: int | None = None, recipients: Iterable[str] | None = None) -> list[dict]:
        """The provider's "accepted" entries, of one worker and some recipients if named."""
        wanted = set(recipients) if recipients is not None else None
        return [e for e in read_log(self.log) if e["what"] == "accepted" and (pid is None or e["pid"] == pid)
                and (wanted is None or e["recipient"] in wanted)]

    def by_recipient(self) -> dict[str, list[dict]]:
        deliveries: dict[str, list[dict]] = collections.defaultdict(list)
        for entry in self.accepted():
            deliveries[entry["recipient"]].append(entry)
        return dict(deliveries)

    def rows(self) -> dict[str, Notification]:
        """Every notification row, by recipient, as stored now."""
        with scripted(self.registry) as env, env["request"].tm:
            db = env["request"].db
            rows = list(db.scalars(select(Notification)))
            db.expunge_all()
        return {row.recipient: row for row in rows}

    def statuses(self) -> collections.Counter:
        return collections.Counter(row.status for row in self.rows().values())

    def close(self) -> None:
        for process in self.processes:
            kill(process)
        self.registry["huey"].flush()


# --- gunicorn ---------------------------------------------------------------------


def paste_ini(path: Path, settings: dict[str, str], pipeline: Iterable[str] = ()) -> Path:
    """An ini file serving the app on ``settings`` (the PasteDeploy way
    production.ini does), behind the filters named ``[filter:<name>]`` in
    ``pipeline`` (each ``use = call:module:factory``)."""
    lines = ["[app:guestguard]", "use = egg:guestguard", *(f"{key} = {value}" for key, value in settings.items()),
             ""]
    filters = list(pipeline)
    for name in filters:
        lines += [f"[filter:{name}]", f"use = call:{name}:make_filter", ""]
    lines += ["[pipeline:main]", f"pipeline = {' '.join([*filters, 'guestguard'])}", ""]
    path.write_text("\n".join(lines))
    return path


def start_gunicorn(ini: Path, port: int, errors: Path, pythonpath: Iterable[Path] = (),
                   options: Iterable[str] = (), **variables: str) -> subprocess.Popen:
    """gunicorn with the repository's gunicorn.conf.py (and command-line
    ``options``, which win over it) on 127.0.0.1:``port``, answering /health
    (else an AssertionError with its stderr, and no server left running)."""
    env = command_env(GUNICORN_BIND=f"127.0.0.1:{port}", **variables)
    env["PYTHONPATH"] = ":".join([*map(str, pythonpath), *filter(None, [env.get("PYTHONPATH")])])
    with errors.open("w") as stream:
        server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), *options,
                                   "--paste", str(ini)],
                                  env=env, stdout=subprocess.DEVNULL, stderr=stream, start_new_session=True)

    def answers() -> bool:
        if server.poll() is not None:
            raise AssertionError(f"gunicorn exited with {server.returncode}:\n{errors.read_text()}")
        try:
            return get(port, "/health", timeout=2)[0] == 200
        except OSError:  # not listening yet, or its workers still loading the app
            return False

    try:
        wait_for(answers, 60, "gunicorn to answer")
    except BaseException:
        kill(server)
        raise
    return server


def get(port: int, path: str, timeout: float = 10) -> tuple[int, bytes]:
    """GET on a connection of its own, closed after: (status, body)."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Connection": "close"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def refuses(port: int) -> bool:
    """Whether a connection to 127.0.0.1:``port`` is refused (nothing listens)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False
