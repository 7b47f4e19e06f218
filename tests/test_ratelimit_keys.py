"""What each rate-limit policy counts by: which requests share a bucket and
which must not (docs/rate-limits.md). Each test lowers one policy's limit to
a few requests and shows, over HTTP, who is held back once it is used up.

- login: per client IP *and* email. By email alone anyone could lock a
  victim out; by IP alone one office would share one budget.
- login_ip, signup, invalid links: per client IP; an IPv6 client by its /64.
  Invalid links by IP, not by token: a scanner tries a new token each time.
- invitation page and RSVP: per link, from wherever it is used.
- the per-user policies: per signed-in person or API key, wherever they are.
- the API ceiling: per IP, and per (verified) API key too.
- guest creation: every guest counts, one at a time or in a batch."""
import pytest

from guestguard.testing import TEST_PASSWORD, acting_as, bearer_for, create_user
from guestguard.workspaces import services as workspaces

IP1, IP2 = "198.51.100.1", "198.51.100.2"


def attempt(app, method, path, ip, body=None, headers=None) -> int:
    """The status of one JSON request from ``ip``."""
    response = app.request(path, method=method, headers=headers or {}, expect_errors=True,
                           environ={"REMOTE_ADDR": ip},
                           **({"body": app.JSONEncoder().encode(body).encode(), "content_type": "application/json"}
                              if body is not None else {}))
    return response.status_int


def login(app, ip, email):
    return attempt(app, "POST", "/api/v1/auth/login", ip, {"email": email, "password": "not the password"})


def test_login_is_counted_per_ip_and_email(make_app):
    app = make_app({"ratelimit.login": "2/hour", "ratelimit.login_ip": "100/hour"})
    assert [login(app, IP1, "ada@example.com") for _ in range(2)] == [401, 401]
    assert login(app, IP1, "ada@example.com") == 429
    assert login(app, IP1, "ADA@Example.com ") == 429, "the email as the view reads it, normalized"
    assert login(app, IP1, "bob@example.com") == 401, "another email from the same IP has its own budget"
    assert login(app, IP2, "ada@example.com") == 401, "the same email from another IP has its own budget"


def test_login_through_the_form_counts_the_forms_email(make_app):
    app = make_app({"ratelimit.login": "2/hour", "ratelimit.login_ip": "100/hour"})
    for _ in range(2):
        login(app, IP1, "ada@example.com")
    form = app.get("/login", extra_environ={"REMOTE_ADDR": IP1}).forms[0]
    form["email"], form["password"] = "ada@example.com", "not the password"
    form.submit(status=429, extra_environ={"REMOTE_ADDR": IP1})
    form["email"] = "bob@example.com"
    form.submit(status=401, extra_environ={"REMOTE_ADDR": IP1})


def test_login_attempts_from_one_ip_have_a_ceiling_whatever_the_email(make_app):
    app = make_app({"ratelimit.login": "100/hour", "ratelimit.login_ip": "3/hour"})
    assert [login(app, IP1, f"user{n}@example.com") for n in range(3)] == [401, 401, 401]
    assert login(app, IP1, "someone-else@example.com") == 429
    assert login(app, IP2, "user0@example.com") == 401


def signup(app, ip, n):
    return attempt(app, "POST", "/api/v1/auth/signup", ip, {
        "email": f"user{n}@example.com", "password": TEST_PASSWORD, "display_name": "U", "accept_policies": True})


def test_signup_is_counted_per_ip(make_app):
    app = make_app({"ratelimit.signup": "2/hour"})
    assert [signup(app, IP1, 1), signup(app, IP1, 2)] == [202, 202]
    assert signup(app, IP1, 3) == 429
    assert signup(app, IP2, 4) == 202


def test_an_ipv6_client_is_counted_by_its_64(make_app):
    app = make_app({"ratelimit.signup": "2/hour"})
    assert [signup(app, "2001:db8:aa:1::1", 1), signup(app, "2001:db8:aa:1:ffff:ffff:ffff:fffe", 2)] == [202, 202]
    assert signup(app, "2001:db8:aa:1:1234::9", 3) == 429, "the same /64"
    assert signup(app, "2001:db8:aa:2::1", 4) == 202, "the next /64 is another subscriber"
    assert signup(app, "2001:db8:ab:1::1", 5) == 202


@pytest.mark.parametrize("path", ["/api/v1/auth/forgot-password", "/api/v1/auth/resend-verification"])
def test_emailing_a_link_is_counted_per_ip_and_email(make_app, path):
    policy = "forgot_password" if "forgot" in path else "resend_verification"
    app = make_app({f"ratelimit.{policy}": "2/hour"})

    def ask(ip, email):
        return attempt(app, "POST", path, ip, {"email": email})

    assert [ask(IP1, "ada@example.com"), ask(IP1, "ada@example.com")] == [202, 202]
    assert ask(IP1, "Ada@example.com") == 429
    assert ask(IP1, "bob@example.com") == 202
    assert ask(IP2, "ada@example.com") == 202


@pytest.fixture
def host(make_app, run_in_request):
    """An app with invitation-page, RSVP and invalid-link limits of 2, and
    two guests with links."""
    app = make_app({"ratelimit.invitation_page": "2/hour", "ratelimit.rsvp": "2/hour",
                    "ratelimit.invalid_link": "2/hour"})
    run_in_request(lambda r: create_user(r, "ada@example.com", "Ada"), app.app.registry)
    ada = bearer_for(app, "ada@example.com")
    workspace_id = app.get("/api/v1/workspaces", headers=ada).json["workspaces"][0]["id"]
    event = app.post_json("/api/v1/events", {"workspace_id": workspace_id, "name": "Gala", "timezone": "UTC",
                                             "starts_at": "2031-01-01T18:00:00", "status": "published"},
                          headers=ada).json["event"]
    tokens = []
    for n in range(2):
        guest = app.post_json(f"/api/v1/events/{event['id']}/guests", {"name": f"G{n}"}, headers=ada).json["guest"]
        tokens.append(app.post_json(f"/api/v1/events/{event['id']}/guests/{guest['id']}/tokens", {},
                                    headers=ada).json["token"])
    return app, tokens


def test_unusable_links_are_counted_per_ip_not_per_token(host):
    app, (token, _) = host
    garbage = [f"{n}" * 43 for n in range(4)]
    assert [attempt(app, "GET", f"/api/v1/access/{garbage[n]}", IP1) for n in range(2)] == [404, 404]
    assert attempt(app, "GET", f"/api/v1/access/{garbage[2]}", IP1) == 429, "a new token each time does not help"
    assert attempt(app, "GET", f"/access/{garbage[3]}", IP1) == 429, "the pages count with the API"
    assert attempt(app, "GET", f"/api/v1/access/{garbage[0]}", IP2) == 404, "another client is not held back"
    assert attempt(app, "GET", f"/api/v1/access/{token}", IP1) == 200, "a real link still opens"


def test_the_invitation_page_is_counted_per_link_wherever_it_is_opened(host):
    app, (first, second) = host
    assert [attempt(app, "GET", f"/api/v1/access/{first}", ip) for ip in (IP1, IP2)] == [200, 200]
    assert attempt(app, "GET", f"/access/{first}", "192.0.2.9") == 429
    assert attempt(app, "GET", f"/api/v1/access/{second}", IP1) == 200


def test_answers_are_counted_per_link_wherever_they_come_from(host):
    app, (first, second) = host

    def answer(token, ip):
        return attempt(app, "POST", f"/api/v1/rsvp/{token}", ip, {"response": "yes"})

    assert [answer(first, IP1), answer(first, IP2)] == [200, 200]
    assert answer(first, "192.0.2.9") == 429
    assert answer(second, IP1) == 200


# The per-caller policies, each with a request that counts against it (the
# limit is checked before the body is read, so an empty body is enough).
PER_CALLER = {
    "workspace_create": lambda who: ("POST", "/api/v1/workspaces", {}),
    "workspace_invite": lambda who: ("POST", f"/api/v1/workspaces/{who['workspace']}/invitations", {}),
    "event_create": lambda who: ("POST", "/api/v1/events", {}),
    "guest_create": lambda who: ("POST", f"/api/v1/events/{who['event']}/guests", {}),
    "link_issue": lambda who: ("POST", f"/api/v1/events/{who['event']}/guests/{who['guest']}/tokens", {}),
    "stream_ticket": lambda who: ("POST", "/api/v1/auth/stream-ticket", {}),
    "password_change": lambda who: ("POST", "/api/v1/me/password", {}),
}


def people(app, run_in_request, emails):
    """Each person with a workspace of their own, an event and a guest in it."""
    run_in_request(lambda r: [create_user(r, email) for email in emails], app.app.registry)
    found = {}
    for email in emails:
        headers = bearer_for(app, email)
        workspace = app.get("/api/v1/workspaces", headers=headers).json["workspaces"][0]["id"]
        event = app.post_json("/api/v1/events", {"workspace_id": workspace, "name": "E", "timezone": "UTC",
                                                 "starts_at": "2031-01-01T18:00:00"}, headers=headers).json["event"]
        guest = app.post_json(f"/api/v1/events/{event['id']}/guests", {"name": "G"}, headers=headers).json["guest"]
        found[email] = {"headers": headers, "workspace": workspace, "event": event["id"], "guest": guest["id"]}
    return found


@pytest.mark.parametrize("policy", sorted(PER_CALLER))
def test_per_user_limits_follow_the_person_not_the_address(make_app, run_in_request, policy):
    app = make_app({"ratelimit.event_create": "100/day", "ratelimit.guest_create": "100/day",
                    "ratelimit.link_issue": "100/day"})
    who = people(app, run_in_request, ["ada@example.com", "bob@example.com"])
    app = make_app({f"ratelimit.{policy}": "2/hour"})  # the same database, fresh counters
    ada, bob = who["ada@example.com"], who["bob@example.com"]

    def go(person, ip):
        method, path, body = PER_CALLER[policy](person)
        return attempt(app, method, path, ip, body, person["headers"])

    assert 429 not in [go(ada, IP1), go(ada, IP1)]
    assert go(ada, IP2) == 429, "moving to another address does not reset a person's budget"
    assert go(bob, IP1) != 429, "someone else at the same address has their own"


def test_api_keys_are_limited_one_by_one(make_app, run_in_request):
    def build(request):
        ada = create_user(request, "ada@example.com", "Ada")
        workspace = workspaces.create_workspace(request.ctx, ada, "W")
        ctx = acting_as(request.ctx, ada)
        return [workspaces.create_api_key(ctx, workspace, f"k{n}", "admin")[1] for n in range(2)]

    app = make_app({"ratelimit.event_create": "2/hour"})
    first, second = run_in_request(build, app.app.registry)
    for _ in range(2):
        attempt(app, "POST", "/api/v1/events", IP1, {}, {"Authorization": f"Bearer {first}"})
    assert attempt(app, "POST", "/api/v1/events", IP2, {}, {"Authorization": f"Bearer {first}"}) == 429
    assert attempt(app, "POST", "/api/v1/events", IP1, {}, {"Authorization": f"Bearer {second}"}) == 422
    ada = bearer_for(app, "ada@example.com")
    assert attempt(app, "POST", "/api/v1/events", IP1, {}, ada) == 422, "the key's creator is someone else"


def test_the_api_ceiling_counts_per_ip_and_per_key(make_app, run_in_request):
    def build(request):
        ada = create_user(request, "ada@example.com", "Ada")
        workspace = workspaces.create_workspace(request.ctx, ada, "W")
        key, secret = workspaces.create_api_key(acting_as(request.ctx, ada), workspace, "k", "admin")
        return key.lookup_id, secret

    app = make_app({"ratelimit.api": "3/minute"})
    lookup_id, secret = run_in_request(build, app.app.registry)
    key = {"Authorization": f"Bearer {secret}"}
    forged = {"Authorization": f"Bearer ggk_{lookup_id}_{'A' * 43}"}
    for ip in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):  # a forged secret never counts against the key
        assert attempt(app, "GET", "/api/v1/workspaces", ip, headers=forged) == 401
    assert [attempt(app, "GET", "/api/v1/workspaces", ip, headers=key) for ip in (IP1, IP1, IP2)] == [200] * 3
    assert attempt(app, "GET", "/api/v1/workspaces", "192.0.2.4", headers=key) == 429, "the key's own ceiling"
    assert attempt(app, "GET", "/api/v1/workspaces", "192.0.2.4") == 401, "that address is not held back"
    assert attempt(app, "GET", "/api/v1/workspaces", IP1) == 401
    assert attempt(app, "GET", "/api/v1/workspaces", IP1) == 429, "the address's ceiling, key or not"


def test_adding_guests_counts_every_guest(make_app, run_in_request):
    app = make_app({"ratelimit.guest_create": "3/day"})
    ada = people(app, run_in_request, ["ada@example.com"])["ada@example.com"]  # one guest already
    app = make_app({"ratelimit.guest_create": "3/day"})
    url = f"/api/v1/events/{ada['event']}/guests"
    batch = [{"name": f"G{n}"} for n in range(4)]
    assert attempt(app, "POST", url, IP1, batch, ada["headers"]) == 429, "four guests at once are over three"
    assert attempt(app, "POST", url, IP1, batch[:2], ada["headers"]) == 201
    assert attempt(app, "POST", url, IP1, batch[2:], ada["headers"]) == 429, "two more would make four"
    assert attempt(app, "POST", url, IP1, batch[2], ada["headers"]) == 201
    assert attempt(app, "POST", url, IP1, {"name": "One more"}, ada["headers"]) == 429


@pytest.mark.parametrize("body, content_type", [
    (b"not json", "application/json"),
    (b'["ada@example.com"]', "application/json"),
    (b'{"email": ["ada@example.com"]}', "application/json"),
    (b'{"email": 42}', "application/json"),
    (b"", "application/json"),
])
def test_a_login_without_a_readable_email_counts_in_one_bucket_per_ip(make_app, body, content_type):
    """However the body is mangled, it cannot open a fresh budget each time."""
    app = make_app({"ratelimit.login": "2/hour", "ratelimit.login_ip": "100/hour"})

    def mangled(ip):
        return app.post("/api/v1/auth/login", body, content_type=content_type, status="*",
                        extra_environ={"REMOTE_ADDR": ip}).status_int

    assert 429 not in [mangled(IP1), mangled(IP1)]
    assert mangled(IP1) == 429
    assert attempt(app, "POST", "/api/v1/auth/login", IP1, {"email": "", "password": "x"}) == 429
    assert mangled(IP2) != 429
    assert login(app, IP1, "ada@example.com") == 401, "a real email has its own budget"


def test_a_form_login_counts_per_email_multipart_too(make_app):
    app = make_app({"ratelimit.login": "2/hour", "ratelimit.login_ip": "100/hour"})
    for _ in range(2):
        login(app, IP1, "ada@example.com")
    token = app.get("/login").html.find("input", {"name": "csrf_token"})["value"]

    def multipart(email):
        return app.post("/login", {"email": email, "password": "x", "csrf_token": token}, status="*",
                        content_type="multipart/form-data", extra_environ={"REMOTE_ADDR": IP1}).status_int

    assert multipart("Ada@Example.com") == 429
    assert multipart("bob@example.com") == 401


def test_anyone_not_signed_in_is_counted_by_address_on_a_per_user_policy(make_app):
    """Asking for a stream ticket is limited before the view sees who asks."""
    app = make_app({"ratelimit.stream_ticket": "2/hour"})
    assert [attempt(app, "POST", "/api/v1/auth/stream-ticket", IP1, {}) for _ in range(2)] == [401, 401]
    assert attempt(app, "POST", "/api/v1/auth/stream-ticket", IP1, {}) == 429
    assert attempt(app, "POST", "/api/v1/auth/stream-ticket", IP2, {}) == 401


def test_the_limiter_reads_no_more_than_64_kib_of_a_body_for_the_email(make_app):
    """An email beyond the first 64 KiB is not looked for: such bodies count
    together, per address."""
    app = make_app({"ratelimit.login": "2/hour", "ratelimit.login_ip": "100/hour"})

    def padded(email):
        return attempt(app, "POST", "/api/v1/auth/login", IP1,
                       {"padding": "x" * 70_000, "email": email, "password": "not the password"})

    assert 429 not in [padded("one@example.com"), padded("two@example.com")]
    assert padded("three@example.com") == 429
    assert login(app, IP1, "one@example.com") == 401


def test_each_api_key_has_its_own_ceiling(make_app, run_in_request):
    def build(request):
        ada = create_user(request, "ada@example.com", "Ada")
        workspace = workspaces.create_workspace(request.ctx, ada, "W")
        ctx = acting_as(request.ctx, ada)
        return [workspaces.create_api_key(ctx, workspace, f"k{n}", "admin")[1] for n in range(2)]

    app = make_app({"ratelimit.api": "2/minute"})
    first, second = ({"Authorization": f"Bearer {secret}"} for secret in run_in_request(build, app.app.registry))
    assert [attempt(app, "GET", "/api/v1/workspaces", ip, headers=first) for ip in (IP1, IP2)] == [200, 200]
    assert attempt(app, "GET", "/api/v1/workspaces", "192.0.2.1", headers=first) == 429
    assert attempt(app, "GET", "/api/v1/workspaces", "192.0.2.2", headers=second) == 200
