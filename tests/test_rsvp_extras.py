"""What the RSVP form asks besides the answer (plus-ones' names, the host's
questions) and what a full event does (capacity, waitlist, promotion),
through the real app; the last place taken by two guests at once."""
import functools
import uuid

import pytest
from sqlalchemy import select

from guestguard.events.models import Guest, Rsvp
from guestguard.testing import add_guest, event_host, inbox, issue, new_client, signed_in, together

EVENT = {"name": "Lantern Supper", "status": "published", "starts_at": "2030-08-14T19:30:00",
         "timezone": "Europe/London", "default_plus_ones": 2}
MAIN = {"label": "Which main course?", "kind": "choice", "choices": ["Fish", "Beef", "Vegetarian"],
        "required": True}
SONG = {"label": "Song request", "kind": "text"}
STAY = {"label": "Staying overnight?", "kind": "yes_no"}


@pytest.fixture
def app(make_app):
    return make_app({"ratelimit.rsvp": "1000/hour", "ratelimit.invitation_page": "1000/hour",
                     "db.pool_size": "8"})


@pytest.fixture
def host(app, run_in_request):
    return event_host(app, run_in_request, {**EVENT, "questions": [MAIN, SONG, STAY],
                                            "ask_plus_one_names": True})


def ids(host):
    return {question["label"]: question["id"] for question in host["event"]["questions"]}


def guest_with_link(app, host, name="Grace Hopper", **fields):
    guest = add_guest(app, host, name=name, email=f"{uuid.uuid4().hex[:8]}@example.com", **fields)
    return guest, issue(app, host, guest)["token"]


# --- questions --------------------------------------------------------------------


def test_questions_are_stored_with_ids(host):
    questions = host["event"]["questions"]
    assert [question["label"] for question in questions] == [MAIN["label"], SONG["label"], STAY["label"]]
    assert all(len(question["id"]) == 8 for question in questions)
    assert questions[1] == {"id": questions[1]["id"], "label": "Song request", "kind": "text", "required": False,
                            "choices": []}
    assert host["event"]["ask_plus_one_names"] is True


@pytest.mark.parametrize("questions", [
    [{"label": "Pick", "kind": "choice", "choices": ["Only one"]}],
    [{"label": "Pick", "kind": "choice", "choices": ["Same", "Same"]}],
    [{"label": "Pick", "kind": "text", "choices": ["A", "B"]}],
    [{"label": "", "kind": "text"}],
    [{"label": "x" * 201, "kind": "text"}],
    [{"label": "Pick", "kind": "essay"}],
    [{"label": f"Q{n}", "kind": "text"} for n in range(11)],
    [{"label": "Q\x00", "kind": "text"}],
])
def test_bad_questions_are_refused(app, host, questions):
    refused = app.patch_json(host["url"], {"questions": questions}, headers=host["ada"], expect_errors=True)
    assert refused.status_int in (400, 422)
    assert any(name.startswith("questions") for name in refused.json["error"]["fields"])
    assert len(app.get(host["url"], headers=host["ada"]).json["event"]["questions"]) == 3


def test_the_guest_list_shows_each_guest_as_the_one_guest_answer_does(app, host):
    """The list reads plain rows and the one-guest answer an ORM guest: every
    field, its JSON's key order and the invitation's state come out the same."""
    q = ids(host)
    grace, token = guest_with_link(app, host, phone="+44 20 7946 0958", group="Family", tags=["vip", "band"],
                                   notes="Vegetarian", plus_ones_allowed=1, preferred_channel="sms")
    app.get(f"/access/{token}", extra_environ={"HTTP_USER_AGENT": "Mozilla/5.0 (X11; Linux x86_64) "
                                               "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"})
    app.post_json(f"/api/v1/rsvp/{token}", {"response": "yes", "plus_ones": 1, "plus_one_names": ["Alan Turing"],
                                            "answers": {q[MAIN["label"]]: "Fish"}})
    alan = add_guest(app, host, name="Alan Turing", email="alan@example.com")
    app.post_json(f"{host['url']}/guests/{alan['id']}/send", {}, headers=host["ada"], status=202)
    add_guest(app, host, name="Ada Lovelace", email="ada.l@example.com")
    listed = app.get(f"{host['url']}/guests", headers=host["ada"]).json["guests"]
    assert [guest["name"] for guest in listed] == ["Ada Lovelace", "Alan Turing", "Grace Hopper"]
    for guest in listed:
        one = app.get(f"{host['url']}/guests/{guest['id']}", headers=host["ada"]).json["guest"]
        assert list(guest.items()) == list(one.items())
    answered = listed[2]
    assert (answered["group"], answered["tags"], answered["plus_one_names"], answered["response"]) == (
        "Family", ["vip", "band"], ["Alan Turing"], "yes")
    assert answered["opened_at"] and answered["responded_at"] and answered["answers"] == {q[MAIN["label"]]: "Fish"}
    assert [guest["delivery"]["state"] for guest in listed][:2] == ["not_invited", "sent"]


def test_answers_are_checked_stored_and_shown_to_the_host(app, host, run_in_request):
    guest, token = guest_with_link(app, host)
    q = ids(host)
    refused = app.post_json(f"/api/v1/rsvp/{token}", {"response": "yes", "plus_ones": 1,
                                                      "answers": {q[STAY["label"]]: "perhaps"}}, status=422)
    fields = refused.json["error"]["fields"]
    assert fields == {"plus_one_names": "needs the name of the guest coming with you",
                      f"question_{q[MAIN['label']]}": "needs an answer",
                      f"question_{q[STAY['label']]}": "must be yes or no"}
    unknown = app.post_json(f"/api/v1/rsvp/{token}", {"response": "no", "answers": {"deadbeef": "x"}}, status=200)
    assert unknown.json["guest"]["answers"] == {}  # a no keeps no answers
    body = {"response": "yes", "plus_ones": 1, "plus_one_names": ["  Alan Turing ", "Ignored"],
            "answers": {q[MAIN["label"]]: "Fish", q[SONG["label"]]: " Dancing Queen ", q[STAY["label"]]: "no"}}
    answered = app.post_json(f"/api/v1/rsvp/{token}", body).json
    assert answered["recorded"] is True
    assert answered["guest"]["plus_one_names"] == ["Alan Turing"]
    assert answered["guest"]["answers"] == {q[MAIN["label"]]: "Fish", q[SONG["label"]]: "Dancing Queen",
                                            q[STAY["label"]]: "no"}
    assert app.post_json(f"/api/v1/rsvp/{token}", body).json["recorded"] is False  # a retry
    listed = app.get(f"{host['url']}/guests/{guest['id']}", headers=host["ada"]).json["guest"]
    assert listed["plus_one_names"] == ["Alan Turing"] and listed["answers"][q[MAIN["label"]]] == "Fish"
    browser = signed_in(app, run_in_request, "ada@example.com")
    page = browser.get(f"/events/{host['event']['id']}/guests/{guest['id']}")
    assert "Bringing: Alan Turing" in page.text and "Which main course?: Fish" in page.text
    event_page = browser.get(f"/events/{host['event']['id']}")
    rollup = event_page.html.find("section", class_="rollup").get_text(" ", strip=True)
    assert "Fish 1" in rollup and "Beef 0" in rollup and "Grace Hopper : Dancing Queen" in rollup


def test_a_wrong_choice_or_huge_answer_is_refused(app, host):
    _, token = guest_with_link(app, host)
    q = ids(host)
    wrong = app.post_json(f"/api/v1/rsvp/{token}", {"response": "maybe", "answers": {q[MAIN["label"]]: "Pizza"}},
                          status=422).json["error"]["fields"]
    assert wrong == {f"question_{q[MAIN['label']]}": "must be one of the choices"}
    huge = app.post_json(f"/api/v1/rsvp/{token}", {"response": "maybe", "answers": {q[MAIN["label"]]: "x" * 501}},
                         status=422).json["error"]["fields"]
    assert list(huge) == [f"answers.{q[MAIN['label']]}"] or list(huge) == ["answers"]
    for bad in ("Fish\x00", "\ud800"):
        app.post_json(f"/api/v1/rsvp/{token}", {"response": "maybe", "answers": {q[MAIN["label"]]: bad}},
                      status=400)


def test_the_guest_form_asks_everything_and_shows_every_problem_at_once(app, host, run_in_request):
    _, token = guest_with_link(app, host)
    q = ids(host)
    page = app.get(f"/access/{token}")
    assert [field["name"] for field in page.html.select("#rsvp-form input[name=plus_one_name]")] == [
        "plus_one_name", "plus_one_name"]
    assert page.html.find("legend", string=lambda text: text and "Which main course?" in text)
    refused = app.post(f"/rsvp/{token}", {"response": "yes", "plus_ones": "2", "plus_one_name": ["Alan", ""],
                                          f"question_{q[SONG['label']]}": "Waterloo"}, status=422)
    summary = refused.html.find(class_="error-summary").get_text(" ", strip=True)
    assert "The names of your guests needs the name of each guest coming with you." in summary
    assert "Which main course? needs an answer." in summary
    # What was typed is kept.
    assert refused.html.find(id=f"rsvp-question-{q[SONG['label']]}")["value"] == "Waterloo"
    assert refused.html.find(id="rsvp-plus-one-name-1")["value"] == "Alan"
    app.post(f"/rsvp/{token}", {"response": "yes", "plus_ones": "2", "plus_one_name": ["Alan", "Ada"],
                                f"question_{q[MAIN['label']]}": "Beef"}, status=303)
    page = app.get(f"/access/{token}")
    assert page.html.find(id="rsvp-plus-one-name-2")["value"] == "Ada"
    assert page.html.find("input", attrs={"value": "Beef", "checked": True})


def test_the_host_edits_questions_on_the_edit_page(app, host, run_in_request):
    browser = signed_in(app, run_in_request, "ada@example.com")
    edit = f"/events/{host['event']['id']}/edit"
    form = browser.get(edit).forms["question-form"]
    form["label"] = "Bringing a dish?"
    form["kind"] = "choice"
    form["choices"] = "Starter"
    refused = form.submit(status=400)
    assert refused.html.find(id="question-choices-error").get_text(" ", strip=True) == (
        "Error: Choices must be 2 to 20 different choices for a choice question.")
    form = refused.forms["question-form"]
    form["choices"] = "Starter, Dessert"
    form["required"] = True
    form.submit(status=303)
    form.submit(status=303)  # the same form sent twice
    questions = app.get(host["url"], headers=host["ada"]).json["event"]["questions"]
    assert [question["label"] for question in questions].count("Bringing a dish?") == 1
    added = questions[-1]
    assert added["choices"] == ["Starter", "Dessert"] and added["required"] is True
    page = browser.get(edit)
    removal = next(form for form in page.forms.values() if "remove" in form.fields)
    removal.submit("remove", value=questions[0]["id"], status=303)
    assert [question["id"] for question in app.get(host["url"], headers=host["ada"]).json["event"]["questions"]
            ] == [question["id"] for question in questions[1:]]


# --- capacity and the waitlist ------------------------------------------------------


def seats_of(app, host):
    return app.get(host["url"], headers=host["ada"]).json["event"]["headcount"]


def test_a_full_event_waitlists_in_order_and_promotes_when_someone_declines(app, host, run_in_request):
    app.patch_json(host["url"], {"capacity": 3, "ask_plus_one_names": False}, headers=host["ada"])
    answer = {"answers": {ids(host)[MAIN["label"]]: "Fish"}}
    ada, ada_token = guest_with_link(app, host, "Ada")
    bob, bob_token = guest_with_link(app, host, "Bob")
    cy, cy_token = guest_with_link(app, host, "Cy")
    assert app.post_json(f"/api/v1/rsvp/{ada_token}", {"response": "yes", "plus_ones": 1, **answer}
                         ).json["guest"]["waitlisted"] is False
    assert app.post_json(f"/api/v1/rsvp/{bob_token}", {"response": "yes", "plus_ones": 1, **answer}
                         ).json["guest"]["waitlisted"] is True
    # One place is free, but Bob is first in line: Cy waits behind him.
    assert app.post_json(f"/api/v1/rsvp/{cy_token}", {"response": "yes", **answer}).json["guest"]["waitlisted"]
    counts = seats_of(app, host)
    assert (counts["yes"], counts["expected"], counts["waitlisted"]) == (1, 2, 2)
    page = app.get(f"/access/{cy_token}")
    assert "on the waitlist" in page.text and "number 2 in line" in page.text
    # Their confirmations say they wait, not that they are coming; Ada's says she is.
    waiting = inbox(app, cy["email"])[0]
    assert waiting.subject == "You're on the waitlist for Lantern Supper: your answer is recorded"
    assert "you're on the waitlist" in waiting.text and "you're coming" not in waiting.text.lower()
    assert "You're on the waitlist" in waiting.html and "The event is full" in waiting.html
    assert inbox(app, ada["email"])[0].subject == "You're coming to Lantern Supper: your answer is recorded"
    # Ada declines: Bob (2) and Cy (1) fit the 3 places, in that order, and are told.
    app.post_json(f"/api/v1/rsvp/{ada_token}", {"response": "no"})
    counts = seats_of(app, host)
    assert (counts["yes"], counts["expected"], counts["waitlisted"]) == (2, 3, 0)
    for guest in (bob, cy):
        (told,) = inbox(app, guest["email"])[:1]
        assert told.subject == "A place opened up: you're coming to Lantern Supper"
    # A seated guest asking for more than is left keeps the place they have.
    refused = app.post_json(f"/api/v1/rsvp/{cy_token}", {"response": "yes", "plus_ones": 2, **answer}, status=409)
    assert refused.json["error"]["code"] == "event_full"
    assert app.get(f"/api/v1/access/{cy_token}").json["guest"]["plus_ones_coming"] == 0
    # Ada changes her mind: the event is full, she waits; a larger capacity seats her.
    assert app.post_json(f"/api/v1/rsvp/{ada_token}", {"response": "yes", **answer}).json["guest"]["waitlisted"]
    app.patch_json(host["url"], {"capacity": 4}, headers=host["ada"])
    assert app.get(f"/api/v1/access/{ada_token}").json["guest"]["waitlisted"] is False
    assert inbox(app, ada["email"])[0].subject.startswith("A place opened up")


def test_removing_a_seated_guest_gives_the_place_to_the_waitlist(app, host, run_in_request):
    app.patch_json(host["url"], {"capacity": 1, "questions": []}, headers=host["ada"])
    ada, ada_token = guest_with_link(app, host, "Ada")
    bob, bob_token = guest_with_link(app, host, "Bob")
    app.post_json(f"/api/v1/rsvp/{ada_token}", {"response": "yes"})
    assert app.post_json(f"/api/v1/rsvp/{bob_token}", {"response": "yes"}).json["guest"]["waitlisted"]
    app.delete(f"{host['url']}/guests/{ada['id']}", headers=host["ada"], status=204)
    assert app.get(f"/api/v1/access/{bob_token}").json["guest"]["waitlisted"] is False
    # The guest page shows the host who waits; the form says why on the page.
    browser = signed_in(app, run_in_request, "ada@example.com")
    assert "Waitlist" in browser.get(f"/events/{host['event']['id']}").text


def test_two_guests_taking_the_last_place_at_once_one_gets_it(app, host, run_in_request):
    app.patch_json(host["url"], {"capacity": 1, "questions": []}, headers=host["ada"])
    tokens = [guest_with_link(app, host, name)[1] for name in ("Ada", "Bob", "Cy", "Dee")]
    answers = together([functools.partial(
        new_client(app.app, REMOTE_ADDR=f"198.51.100.{n + 1}").post_json, f"/api/v1/rsvp/{token}",
        {"response": "yes"}, status="*") for n, token in enumerate(tokens)])
    assert sorted(answer.status_int for answer in answers) == [200] * len(tokens)
    seated = run_in_request(lambda request: request.db.scalars(select(Guest.name).where(
        Guest.response == "yes", Guest.waitlisted_at.is_(None))).all())
    waiting = run_in_request(lambda request: request.db.scalars(
        select(Guest.name).where(Guest.waitlisted_at.is_not(None))).all())
    assert run_in_request(lambda request: len(request.db.scalars(select(Rsvp.id)).all())) == len(tokens)
    assert len(seated) == 1 and len(waiting) == 3
    assert seats_of(app, host)["expected"] == 1
