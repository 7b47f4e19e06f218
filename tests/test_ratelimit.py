"""Rate limits, client addresses behind proxies, and the login lockout."""
import os
import re
import threading
import uuid

import pytest
import time_machine
from prometheus_client import REGISTRY
from pyramid_retry import RetryableException

from guestguard.plugins import hookimpl
from guestguard.ratelimit.service import Limiter, policies_from
from guestguard.settings import SettingsError
from guestguard.testing import REDIS_ENV, TEST_PASSWORD, create_user, outbox, signup as api_signup

T0 = "2026-06-01T12:00:00+00:00"


def signup(app, n, status=202, **kw):
    return api_signup(app, f"user{n}@example.com", "a long passphrase here", f"User {n}", status, **kw)


def metric(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_the_sixth_signup_in_an_hour_waits_for_the_window(app):
    with time_machine.travel(T0, tick=False) as clock:
        for n in range(5):
            signup(app, n)
        clock.shift(600)
        blocked = signup(app, 5, status=429)
        assert blocked.headers["Retry-After"] == "3000"
        assert blocked.json["error"] == {"code": "rate_limited", "retry_after": 3000,
                                         "message": "Too many requests. Try again in 3000 seconds."}
        assert blocked.headers["RateLimit-Policy"] == '"signup";q=5;w=3600'
        assert blocked.headers["RateLimit"] == '"signup";r=0;t=3000'
        clock.shift(3001)
        signup(app, 6)


def test_retry_after_rounds_up_to_whole_seconds(app):
    with time_machine.travel(T0, tick=False) as clock:
        for n in range(5):
            signup(app, n)
        clock.shift(0.4)
        assert signup(app, 5, status=429).headers["Retry-After"] == "3600"


def test_blocks_are_counted_per_route(app):
    before = metric("ratelimit_block_total", route="api_signup")
    for n in range(6):
        signup(app, n, status=202 if n < 5 else 429)
    assert metric("ratelimit_block_total", route="api_signup") == before + 1


def test_the_web_form_gets_a_friendly_page(app):
    with time_machine.travel(T0, tick=False):
        for _ in range(3):
            form = app.get("/forgot-password").forms[0]
            form["email"] = "ada@example.com"
            form.submit()
        form = app.get("/forgot-password").forms[0]
        form["email"] = "ada@example.com"
        page = form.submit(status=429)
    assert "going too fast" in page.text
    assert page.headers["Retry-After"] == "3600"


def test_a_spoofed_forwarded_for_from_an_untrusted_peer_changes_nothing(app):
    for n in range(5):
        signup(app, n, headers={"X-Forwarded-For": f"203.0.113.{n}"})
    signup(app, 5, status=429, headers={"X-Forwarded-For": "198.51.100.7"})


def test_a_trusted_proxy_separates_its_clients(make_app):
    app = make_app({"app.trusted_proxies": "127.0.0.1/32, 10.0.0.0/8"})
    for n in range(5):
        signup(app, n, headers={"X-Forwarded-For": "203.0.113.9"})
    signup(app, 5, status=429, headers={"X-Forwarded-For": "203.0.113.9"})
    # another client behind the same proxy, through a second trusted hop
    signup(app, 6, headers={"X-Forwarded-For": "198.51.100.7, 10.1.2.3"})
    # a client cannot escape by prepending its own entry: the proxy appends the real one
    signup(app, 7, status=429, headers={"X-Forwarded-For": "192.0.2.1, 203.0.113.9"})


def test_the_api_has_a_general_ceiling(make_app):
    app = make_app({"ratelimit.api": "3/minute"})
    for _ in range(3):
        app.get("/api/v1/nothing-here", status=404)
    blocked = app.get("/api/v1/nothing-here", status=429)
    assert blocked.json["error"]["code"] == "rate_limited"
    assert blocked.headers["RateLimit-Policy"] == '"api";q=3;w=60'
    app.get("/health")  # pages outside the API are not counted


def test_limits_can_be_turned_off(make_app):
    app = make_app({"ratelimit.enabled": "false"})
    for n in range(7):
        signup(app, n)


def test_a_dead_store_fails_open_and_is_counted(make_app):
    app = make_app({"ratelimit.url": "redis://127.0.0.1:1/0"})
    before = metric("ratelimit_backend_errors_total")
    for n in range(7):
        signup(app, n)
    assert metric("ratelimit_backend_errors_total") >= before + 7


@pytest.mark.parametrize("value", ["-5/hour", "0/hour", "5/fortnight", "lots", "9999999/second",
                                   "1/400 days"])
def test_bad_limits_stop_startup_naming_the_setting(make_app, value):
    with pytest.raises(SettingsError, match="'ratelimit.login'"):
        make_app({"ratelimit.login": value})


def test_bad_proxy_addresses_stop_startup(make_app):
    with pytest.raises(SettingsError, match="'app.trusted_proxies'"):
        make_app({"app.trusted_proxies": "10.0.0.0/8, proxy.example"})


STORES = ["memory://"] + ([os.environ[REDIS_ENV]] if os.environ.get(REDIS_ENV) else [])


@pytest.mark.parametrize("url", STORES)
def test_concurrent_hits_never_pass_more_than_the_limit(url):
    from guestguard.ratelimit.service import POLICY_KEYS

    settings = {"ratelimit.enabled": True, "ratelimit.url": url, "ratelimit.api": "50/minute",
                "ratelimit.account_mail": "5/hour",
                **{f"ratelimit.{name}": "5/hour" for name in POLICY_KEYS}}
    limiter = Limiter(settings, policies_from(settings))
    policy = limiter.policies["api"]
    key = f"concurrency-{uuid.uuid4().hex}"
    allowed = []
    barrier = threading.Barrier(20)

    def hammer():
        barrier.wait()
        for _ in range(10):
            allowed.append(limiter.check(policy, key).allowed)

    threads = [threading.Thread(target=hammer) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(allowed) == 200
    assert allowed.count(True) == 50


# --- lockout -----------------------------------------------------------------


def login(app, password, status):
    return app.post_json("/api/v1/auth/login", {"email": "ada@example.com", "password": password},
                         status=status)


def test_lockout_end_to_end(make_app, run_in_request):
    app = make_app({"ratelimit.login": "100/5 minutes"})  # the lockout alone, unthrottled
    run_in_request(lambda request: create_user(request, "ada@example.com", "Ada"), app.app.registry)
    for _ in range(5):
        assert login(app, "not the password", 401).json["error"]["code"] == "invalid_credentials"
    locked_mail = outbox(app)[0][1]
    assert locked_mail.subject == "Your GuestGuard account was locked"
    wrong = login(app, "not the password", 401).json
    # even the right password is refused, with the very same answer
    assert login(app, TEST_PASSWORD, 401).json == wrong
    token = re.search(r"/reset-password/(\S+)", locked_mail.text).group(1)
    app.post_json("/api/v1/auth/reset-password", {"token": token, "password": "a brand new passphrase"})
    tokens = login(app, "a brand new passphrase", 200).json
    assert tokens["access_token"]
    # the count starts again from zero
    for _ in range(4):
        login(app, "wrong again", 401)
    login(app, "a brand new passphrase", 200)


def test_a_successful_login_resets_the_count(make_app, run_in_request):
    app = make_app({"ratelimit.login": "100/5 minutes"})
    run_in_request(lambda request: create_user(request, "ada@example.com", "Ada"), app.app.registry)
    for _ in range(4):
        login(app, "not the password", 401)
    login(app, TEST_PASSWORD, 200)
    for _ in range(4):
        login(app, "not the password", 401)
    login(app, TEST_PASSWORD, 200)
    assert not any(m.subject == "Your GuestGuard account was locked" for _, m in outbox(app))


def test_concurrent_failures_all_count(make_app, run_in_request):
    import threading

    from sqlalchemy import select

    from guestguard.accounts.models import User

    app = make_app({"ratelimit.login": "100/5 minutes", "auth.lockout_threshold": "50"})
    run_in_request(lambda request: create_user(request, "ada@example.com", "Ada"), app.app.registry)
    barrier = threading.Barrier(4)

    def fail():
        barrier.wait()
        for _ in range(3):
            app.post_json("/api/v1/auth/login", {"email": "ada@example.com", "password": "wrong guess"},
                          status=401)

    threads = [threading.Thread(target=fail) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    user = run_in_request(lambda r: r.db.scalar(select(User)), app.app.registry)
    assert user.failed_logins == 12


def test_throttling_comes_before_the_lockout(make_app, run_in_request):
    """With a tight login limit, an attacker from one address is stopped
    before reaching the lockout threshold."""
    app = make_app({"ratelimit.login": "3/5 minutes"})
    run_in_request(lambda request: create_user(request, "ada@example.com", "Ada"), app.app.registry)
    for _ in range(3):
        login(app, "guess", 401)
    assert login(app, "guess", 429).json["error"]["code"] == "rate_limited"
    from sqlalchemy import select

    from guestguard.accounts.models import User

    user = run_in_request(lambda r: r.db.scalar(select(User)), app.app.registry)
    assert (user.failed_logins, user.locked_at) == (3, None)


class FlakyOnce:
    """A plugin view that fails its first attempt with an error pyramid_retry
    replays (as a deadlock or serialization failure is), after its rate limit
    and the API ceiling were charged."""

    def __init__(self):
        self.attempts = 0

    @hookimpl
    def configure(self, config):
        from pydantic import BaseModel

        class Ping(BaseModel):
            email: str
            n: int

        config.add_route("flaky", "/api/v1/test-flaky")
        config.add_view(self.view, route_name="flaky", renderer="json", rate_limit="invalid_link")
        config.add_route("flaky_body", "/api/v1/test-flaky-body")
        config.add_view(self.echo, route_name="flaky_body", renderer="json", request_method="POST",
                        rate_limit="login", body=Ping)

    def echo(self, request):
        """Reads its body on both attempts (the rate-limit key peeks at it first)."""
        data = request.body_input
        self.attempts += 1
        if request.environ["retry.attempt"] == 0:
            raise RetryableException("could not serialize access")
        return {"email": data.email, "n": data.n}

    def view(self, request):
        self.attempts += 1
        if request.environ["retry.attempt"] == 0:
            raise RetryableException("deadlock detected")
        return {"attempt": request.environ["retry.attempt"]}


def test_a_request_replayed_after_a_retryable_error_is_charged_once(make_app):
    flaky = FlakyOnce()
    app = make_app({"ratelimit.invalid_link": "3/minute", "ratelimit.api": "4/minute"},
                   plugins=[("flaky", flaky)])
    with time_machine.travel(T0, tick=False):
        answers = [app.get("/api/v1/test-flaky").json for _ in range(3)]
        assert answers == [{"attempt": 1}] * 3 and flaky.attempts == 6
        refused = app.get("/api/v1/test-flaky", status=429)
    assert refused.json["error"]["code"] == "rate_limited"
    assert refused.headers["RateLimit-Policy"] in ('"invalid_link";q=3;w=60', '"api";q=4;w=60')
    assert flaky.attempts == 6


def test_a_replayed_request_reads_its_body_again_and_is_counted_once(make_app):
    flaky = FlakyOnce()
    app = make_app({"ratelimit.login": "2/minute"}, plugins=[("flaky", flaky)])
    with time_machine.travel(T0, tick=False):
        for n in range(2):
            answer = app.post_json("/api/v1/test-flaky-body", {"email": "ada@example.com", "n": n}).json
            assert answer == {"email": "ada@example.com", "n": n}
        assert flaky.attempts == 4
        app.post_json("/api/v1/test-flaky-body", {"email": "ada@example.com", "n": 9}, status=429)
