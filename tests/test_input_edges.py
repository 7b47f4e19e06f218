"""Every input rule at its edges (docs/api.md): the last value accepted and
the first refused, for passwords, names, venues, plus-ones and phone
numbers."""
import pytest

from guestguard.testing import TEST_PASSWORD, create_user, session_bearer, signup

# In one pass only when make test runs both: pages, forms and rules whose outcome the backend does not change
# (docs/testing.md, "Two passes at once").
pytestmark = pytest.mark.one_pass("sqlite")


COMMON = "football"  # on the list of the most common passwords


def signup_status(app, password, email="ada@example.com", name="Ada") -> int:
    return signup(app, email, password, name, status="*").status_int


@pytest.mark.parametrize("length, status", [(7, 422), (8, 202), (128, 202), (129, 422)])
def test_a_new_password_is_8_to_128_characters(app, length, status):
    assert signup_status(app, "p" * (length - 1) + "!") == status


def test_a_password_is_taken_as_typed_spaces_and_all(app):
    assert signup_status(app, "       x") == 202, "eight characters, seven of them spaces"
    assert signup_status(app, " " * 7, email="b@example.com") == 422


@pytest.mark.parametrize("password", [" " * 8, " " * 128, "\t" * 10, " \u00a0 \u2003 \u3000  "])
def test_a_password_of_only_spaces_is_refused(app, password):
    response = signup(app, "ada@example.com", password, "Ada", status=422)
    assert response.json["error"]["fields"]["password"] == "must not be only spaces"


@pytest.mark.parametrize("password", [COMMON, COMMON.upper(), COMMON.capitalize(), "FootBall"])
def test_a_common_password_is_refused_in_any_case(app, password):
    response = signup(app, "ada@example.com", password, "Ada", status=422)
    assert "common" in response.json["error"]["fields"]["password"]


def test_a_common_password_with_something_added_is_fine(app):
    assert signup_status(app, COMMON + "!") == 202


@pytest.mark.parametrize("password", ["longname@example.com", "LongName@Example.COM", "LONGNAME@EXAMPLE.COM"])
def test_the_email_as_password_is_refused_in_any_case(app, password):
    response = signup(app, "longname@example.com", password, "Ada", status=422)
    assert "email" in response.json["error"]["fields"]["password"]


def test_a_password_containing_the_email_is_fine(app):
    assert signup_status(app, "longname@example.com!", email="longname@example.com") == 202


@pytest.mark.parametrize("length, status", [(0, 422), (1, 202), (100, 202), (101, 422)])
def test_a_display_name_is_1_to_100_characters(app, length, status):
    assert signup_status(app, TEST_PASSWORD, name="n" * length) == status


@pytest.fixture
def ada(app, run_in_request):
    run_in_request(lambda r: create_user(r, "ada@example.com", "Ada"), app.app.registry)
    return session_bearer(app.app.registry, "ada@example.com")


@pytest.mark.parametrize("length, status", [(7, 422), (8, 200), (128, 200), (129, 422)])
def test_changing_the_password_follows_the_same_rules(app, ada, length, status):
    response = app.post_json("/api/v1/me/password", {"current_password": TEST_PASSWORD,
                                                     "new_password": "q" * length, "end_other_sessions": False},
                             headers=ada, status="*")
    assert response.status_int == status


def test_changing_to_a_common_password_in_another_case_is_refused(app, ada):
    app.post_json("/api/v1/me/password", {"current_password": TEST_PASSWORD, "new_password": COMMON.upper()},
                  headers=ada, status=422)


@pytest.mark.parametrize("length, status", [(128, 401), (129, 422)])
def test_a_login_password_longer_than_any_allowed_is_malformed_not_wrong(app, ada, length, status):
    app.post_json("/api/v1/auth/login", {"email": "ada@example.com", "password": "w" * length}, status=status)


@pytest.mark.parametrize("length, status", [(0, 422), (100, 201), (101, 422)])
def test_a_workspace_name_is_1_to_100_characters(app, ada, length, status):
    app.post_json("/api/v1/workspaces", {"name": "w" * length}, headers=ada, status=status)


@pytest.fixture
def workspace(app, ada):
    return app.get("/api/v1/workspaces", headers=ada).json["workspaces"][0]["id"]


def new_event(app, ada, workspace, answer=201, **fields):
    body = {"workspace_id": workspace, "name": "Gala", "timezone": "UTC", "starts_at": "2031-01-01T18:00:00",
            **fields}
    return app.post_json("/api/v1/events", body, headers=ada, status=answer)


@pytest.mark.parametrize("field, limit", [("name", 200), ("venue", 300), ("description", 5000),
                                          ("host_message", 5000)])
def test_event_texts_up_to_their_limit(app, ada, workspace, field, limit):
    new_event(app, ada, workspace, **{field: "v" * limit})
    refused = new_event(app, ada, workspace, answer=422, **{field: "v" * (limit + 1)})
    assert field in refused.json["error"]["fields"]


def test_an_event_needs_a_name(app, ada, workspace):
    assert "name" in new_event(app, ada, workspace, answer=422, name="").json["error"]["fields"]


@pytest.mark.parametrize("value, status", [(-1, 422), (0, 201), (20, 201), (21, 422)])
def test_default_plus_ones_are_0_to_20(app, ada, workspace, value, status):
    new_event(app, ada, workspace, answer=status, default_plus_ones=value)


@pytest.fixture
def event(app, ada, workspace):
    return new_event(app, ada, workspace, status="published").json["event"]


def add_guest(app, ada, event, status=201, **fields):
    return app.post_json(f"/api/v1/events/{event['id']}/guests", {"name": "Grace", **fields}, headers=ada,
                         status=status)


@pytest.mark.parametrize("value, status", [(-1, 422), (0, 201), (20, 201), (21, 422)])
def test_a_guests_plus_ones_are_0_to_20(app, ada, event, value, status):
    add_guest(app, ada, event, status=status, plus_ones_allowed=value)


@pytest.mark.parametrize("length, status", [(0, 422), (1, 201), (200, 201), (201, 422)])
def test_a_guest_name_is_1_to_200_characters(app, ada, event, length, status):
    add_guest(app, ada, event, status=status, name="g" * length)


def test_an_answer_brings_at_most_the_plus_ones_allowed(app, ada, event):
    guest = add_guest(app, ada, event, plus_ones_allowed=20).json["guest"]
    token = app.post_json(f"/api/v1/events/{event['id']}/guests/{guest['id']}/tokens", {}, headers=ada).json["token"]
    app.post_json(f"/api/v1/rsvp/{token}", {"response": "yes", "plus_ones": 21}, status=422)
    app.post_json(f"/api/v1/rsvp/{token}", {"response": "yes", "plus_ones": -1}, status=422)
    assert app.post_json(f"/api/v1/rsvp/{token}", {"response": "yes", "plus_ones": 20}).status_int == 200
    app.patch_json(f"/api/v1/events/{event['id']}/guests/{guest['id']}", {"plus_ones_allowed": 2}, headers=ada)
    app.post_json(f"/api/v1/rsvp/{token}", {"response": "yes", "plus_ones": 3}, status="4*")
    assert app.post_json(f"/api/v1/rsvp/{token}", {"response": "yes", "plus_ones": 2}).status_int == 200


@pytest.mark.parametrize("typed, stored", [
    ("+44 20 7946 0958", "+442079460958"),      # international, with spaces
    ("+442079460958", "+442079460958"),         # already E.164
    ("(415) 555-2671", "+14155552671"),         # no country code: guests.default_region (US)
    ("415.555.2671", "+14155552671"),
    ("+1 415 555 2671", "+14155552671"),
])
def test_phone_numbers_are_stored_in_e164(app, ada, event, typed, stored):
    assert add_guest(app, ada, event, phone=typed).json["guest"]["phone"] == stored


@pytest.mark.parametrize("typed", [
    "+44 20 7946 095",       # one digit short
    "+44 20 7946 09580",     # one digit too many
    "020 7946 0958",         # a UK number without its country code is no US number
    "not a number",
    "+",
    "+1" + "2" * 39,         # 41 characters: over the length limit
])
def test_phone_numbers_that_are_not_valid_are_refused(app, ada, event, typed):
    response = add_guest(app, ada, event, status=422, phone=typed)
    assert "phone" in response.json["error"]["fields"]


def test_an_empty_phone_is_no_phone(app, ada, event):
    assert add_guest(app, ada, event, phone="").json["guest"]["phone"] in (None, "")


def test_the_default_region_reads_numbers_without_a_country_code(make_app, run_in_request):
    app = make_app({"guests.default_region": "GB"})
    run_in_request(lambda r: create_user(r, "ada@example.com", "Ada"), app.app.registry)
    ada = session_bearer(app.app.registry, "ada@example.com")
    workspace = app.get("/api/v1/workspaces", headers=ada).json["workspaces"][0]["id"]
    event = new_event(app, ada, workspace).json["event"]
    assert add_guest(app, ada, event, phone="020 7946 0958").json["guest"]["phone"] == "+442079460958"


def test_the_password_rules_as_the_admin_command_applies_them():
    """``guestguard create-admin`` checks the password against the email too."""
    from guestguard.accounts.passwords import password_problem

    assert password_problem("p" * 7) == "must be at least 8 characters"
    assert password_problem("p" * 8) is None
    assert password_problem("p" * 128) is None
    assert password_problem("p" * 129) == "must be at most 128 characters"
    assert password_problem(COMMON.upper()) == "is one of the most common passwords; choose another"
    assert password_problem("Ada@Example.com", "ada@example.COM") == "must not be your email address"
    assert password_problem("ada@example.com!", "ada@example.com") is None
    assert password_problem("ada@example.com") is None, "no email given, nothing to compare"


def test_an_unknown_email_is_refused_even_with_the_stand_in_hashs_own_password(app):
    """Unknown emails are checked against a stand-in hash, to take the same
    time; its password logs nobody in."""
    app.post_json("/api/v1/auth/login", {"email": "nobody@example.com", "password": "no user has this password"},
                  status=401)


def test_an_unreadable_password_hash_refuses_the_login_without_failing(app, run_in_request):
    from sqlalchemy import update

    from guestguard.accounts.models import User

    run_in_request(lambda r: create_user(r, "ada@example.com", "Ada"), app.app.registry)
    run_in_request(lambda r: r.db.execute(update(User).values(password_hash="not-an-argon2-hash")),
                   app.app.registry)
    app.post_json("/api/v1/auth/login", {"email": "ada@example.com", "password": TEST_PASSWORD}, status=401)
