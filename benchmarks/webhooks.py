"""Webhook intake (part 9 of ``make bench``): signed SNS notifications
posted to ``POST /webhooks/ses``, each verified (signature, certificate
URL, age, topic; the certificate fetched once, from a local server, then
cached) and stored in the inbox, against a bare insert of the same row in
a transaction of its own (the floor). Processing is left to the worker and
not counted: this is what SNS waits for.

In process (WebTest), SQLite. Skipped, saying why, without guestguard-ses.
"""
from __future__ import annotations

import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

NOTIFICATIONS = 500


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.95) - 1]


def main() -> int:
    try:
        from guestguard_ses.testing import TOPIC, LocalServer, Signer, notification, ses_event
    except ImportError:
        print("webhook intake: skipped, guestguard-ses is not installed")
        return 0
    import webtest
    from sqlalchemy import create_engine, insert

    from guestguard import make_config
    from guestguard.db import utcnow
    from guestguard.testing import migrate
    from guestguard.webhooks.models import InboxEntry

    signer, server = Signer(), LocalServer()
    server.answers["/cert.pem"] = (200, signer.pem)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            db_url = f"sqlite:///{Path(tmp) / 'bench.sqlite'}"
            migrate(db_url)
            config = make_config({
                "app.env": "test", "db.url": db_url, "huey.url": "memory://", "huey.immediate": "false",
                "log.level": "WARNING", "ses.sns_topic_arns": TOPIC,
                "ses.sns_certificate_hosts": r"^127\.0\.0\.1$", "ses.sns_allow_http": "true",
            }, environ={})
            app = webtest.TestApp(config.make_wsgi_app())
            bodies = [json.dumps(signer.sign(notification(
                ses_event("Delivery", f"0100-{index}"), server.url("/cert.pem")), "2")).encode()
                for index in range(NOTIFICATIONS + 20)]
            headers = {"Content-Type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": "Notification"}
            for body in bodies[:20]:  # warm up: the certificate fetched and cached
                app.post("/webhooks/ses", body, headers=headers)
            measured = []
            for body in bodies[20:]:
                start = time.perf_counter()
                app.post("/webhooks/ses", body, headers=headers)
                measured.append(time.perf_counter() - start)

            engine = create_engine(db_url)
            floor = []
            for body in bodies[20:]:
                row = {"id": uuid.uuid4(), "provider": "bench", "event_id": json.loads(body)["MessageId"],
                       "received_at": utcnow(), "body": body.decode(), "headers": {}, "status": "pending",
                       "attempts": 0, "next_attempt_at": utcnow()}
                start = time.perf_counter()
                with engine.begin() as connection:
                    connection.execute(insert(InboxEntry), row)
                floor.append(time.perf_counter() - start)
            engine.dispose()
            config.registry["db.engine"].dispose()
    finally:
        server.close()
    (floor_p50, floor_p95), (p50, p95) = percentiles(floor), percentiles(measured)
    print(f"webhook intake: {NOTIFICATIONS} signed SNS notifications (SignatureVersion 2) verified and stored "
          "vs a bare insert of the same rows")
    print(f"  floor     p50 {floor_p50 * 1e6:8.0f} us   p95 {floor_p95 * 1e6:8.0f} us   "
          f"{len(floor) / sum(floor):8.0f} rows/s")
    print(f"  measured  p50 {p50 * 1e6:8.0f} us   p95 {p95 * 1e6:8.0f} us   "
          f"{len(measured) / sum(measured):8.0f} notifications/s")
    print(f"  ratio     p50 {p50 / floor_p50:8.2f} x   p95 {p95 / floor_p95:8.2f} x")
    return 0


if __name__ == "__main__":
    main()
