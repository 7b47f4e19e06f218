"""The two ways GuestGuard runs: the paste app with its in-process worker
(``make run``), and a separate ``guestguard worker`` process (production)."""
import signal
import subprocess

from sqlalchemy import create_engine, text
from webtest import TestApp

import guestguard
from guestguard.testing import COMMAND, command_env, guestguard_command, scripted, site_ini, wait_for


def test_main_with_an_in_process_worker_delivers_and_reports_ready(base_settings, tmp_path):
    from guestguard.notifications.services import queue_notification

    settings = {**base_settings, "huey.url": f"sqlite:///{tmp_path}/queue.sqlite",
                "huey.immediate": "false", "huey.in_process_worker": "true", "huey.workers": "1"}
    app = guestguard.main({}, **settings)
    registry = app.registry
    try:
        response = TestApp(app).get("/readyz")
        assert response.json["checks"]["queue"] == "ok"

        with scripted(registry) as env, env["request"].tm:
            queue_notification(env["request"].ctx, channel="email", recipient="ada@example.com",
                               template="test_message", context={"base_url": "https://x"})
        console = registry["notifications.providers_by_name"]["console"]
        wait_for(lambda: list(console.messages), 30, "the in-process worker to deliver it")
    finally:
        registry["huey.consumer"].stop(graceful=True)
        registry["db.engine"].dispose()
    response = TestApp(app).get("/readyz", status=503)
    assert response.json["checks"]["queue"].startswith("failed")


def test_a_separate_worker_process_delivers_what_the_web_side_queued(tmp_path, db_url):
    ini = site_ini(tmp_path)
    env = {"GG_DB_URL": db_url, "GG_APP_ENV": "test",
           "GG_HUEY_URL": f"sqlite:///{tmp_path}/queue.sqlite", "GG_HUEY_IN_PROCESS_WORKER": "false"}
    queued = guestguard_command("send-test", str(ini), "--to", "ops@example.com", env=env, timeout=60)
    assert queued.returncode == 0, queued.stderr
    worker = subprocess.Popen([COMMAND, "worker", str(ini), "--workers", "1"],
                              env=command_env(**env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    engine = create_engine(db_url)
    try:
        def status():
            with engine.connect() as connection:
                return connection.execute(text(
                    "SELECT status FROM notifications WHERE recipient = 'ops@example.com'")).scalar()

        wait_for(lambda: status() == "succeeded", 30, "the worker process to deliver it")
    finally:
        worker.send_signal(signal.SIGTERM)  # what a service manager sends: a graceful stop
        output, _ = worker.communicate(timeout=30)
        engine.dispose()
    assert "dispatch_notification" in output
    assert worker.returncode == 0, output
