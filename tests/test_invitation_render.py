"""The invitation page across the states a guest can find it in, through the
real app: what each must show stays put whatever is done to make its
rendering cheaper (who is invited, the answer and its form, the pass, the
links, a hostile name shown as text)."""
import pytest

from guestguard.testing import add_guest, event_host, issue

pytestmark = pytest.mark.one_pass("sqlite")

HOSTILE = '<script>alert("x")</script> & Sons'
LONG = "Maximiliane Aurelia " * 5
EVENT = {"name": "Midsummer <Gala>", "status": "published", "starts_at": "2030-06-21T19:00:00",
         "ends_at": "2030-06-21T23:30:00", "timezone": "Europe/London", "venue": "Kew Gardens, Richmond",
         "description": "Black tie.\nCarriages at one.", "host_message": "Dinner at eight.",
         "default_plus_ones": 2, "rsvp_deadline": "2030-06-01T12:00:00"}
BARE = {"name": "Picnic", "status": "published", "starts_at": "2030-07-04T12:00:00",
        "timezone": "America/New_York", "default_plus_ones": 0}


def answer(app, token, response, plus_ones="0", dietary="", message=""):
    app.post(f"/rsvp/{token}", {"response": response, "plus_ones": plus_ones, "dietary": dietary,
                                "message": message}, status=303)


def invitation_pages(app, run_in_request) -> dict[str, tuple[int, str]]:
    """Each state's (status, HTML) of ``GET /access/{token}``."""
    pages = {}

    def look(name, token, status=200):
        page = app.get(f"/access/{token}", status=status)
        pages[name] = (page.status_int, page.text)

    full = event_host(app, run_in_request, EVENT)
    grace = issue(app, full, add_guest(app, full))["token"]
    look("not opened", grace)
    look("opened", grace)
    answer(app, grace, "yes", "2", "No nuts <please>", "See you")
    look("yes with plus-ones and a pass", grace)
    answer(app, grace, "maybe", "1", "Vegan")
    look("maybe", grace)
    answer(app, grace, "no")
    look("no", grace)
    hostile = issue(app, full, add_guest(app, full, name=HOSTILE, email="h@example.com"))["token"]
    look("hostile name", hostile)
    long = issue(app, full, add_guest(app, full, name=LONG.strip(), email="l@example.com"))["token"]
    look("long name", long)
    preselected = app.get(f"/access/{long}?answer=maybe")
    pages["preselected"] = (preselected.status_int, preselected.text)
    refused = app.post(f"/rsvp/{long}", {"response": "yes", "plus_ones": "9"}, status=422)
    pages["refused form"] = (refused.status_int, refused.text)
    gone = add_guest(app, full, name="Gone", email="g@example.com")
    gone_token = issue(app, full, gone)["token"]
    app.delete(f"{full['url']}/guests/{gone['id']}", headers=full["ada"])
    look("removed guest", gone_token, 404)
    sibling = issue(app, full, add_guest(app, full, name="Rev", email="r@example.com"))["token"]
    reissued = add_guest(app, full, name="Rev2", email="r2@example.com")
    first = issue(app, full, reissued)["token"]
    issue(app, full, reissued)
    look("replaced link", first, 404)
    look("a sibling's link unaffected", sibling)
    bare = event_host_again(app, run_in_request, full)
    bob = issue(app, bare, add_guest(app, bare, name="Bob"))["token"]
    look("bare event, 12-hour zone", bob)
    answer(app, bob, "yes")
    look("bare event answered yes", bob)
    return pages


def event_host_again(app, run_in_request, host):
    created = app.post_json("/api/v1/events", {"workspace_id": host["workspace"], **BARE},
                            headers=host["ada"]).json["event"]
    return {**host, "event": created, "url": f"/api/v1/events/{created['id']}"}


@pytest.fixture
def pages(app, run_in_request):
    return invitation_pages(app, run_in_request)


def test_every_state_shows_what_it_must(pages):
    for name, (_, html) in pages.items():
        assert html.lstrip().startswith("<!doctype html>"), name
        assert html.count("<script") == 0, name
    assert "Hello Grace Hopper," in pages["not opened"][1]
    full = pages["yes with plus-ones and a pass"][1]
    assert "You said yes, with 2 guests" in full
    assert 'value="No nuts &lt;please&gt;"' in full
    assert "Your pass" in full and "<svg" in full
    assert "Midsummer &lt;Gala&gt;" in full
    assert "Friday 21 June 2030, 19:00 – 23:30 BST" in full
    assert 'action="/rsvp/' in full and 'event.ics"' in full
    assert "You said maybe" in pages["maybe"][1] and "Your pass" not in pages["maybe"][1]
    assert "You said no" in pages["no"][1]
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; Sons" in pages["hostile name"][1]
    assert "We’ve ticked the answer" in pages["preselected"][1]
    assert "Your answer was not saved" in pages["refused form"][1]
    assert pages["removed guest"][0] == pages["replaced link"][0] == 404
    bare = pages["bare event, 12-hour zone"][1]
    assert "12:00 pm EDT" in bare and "Where" not in bare and "About the event" not in bare
    assert "Guests coming with you" not in bare
    assert "You said yes" in pages["bare event answered yes"][1]


def test_a_changed_deadline_shows_at_once(app, run_in_request):
    host = event_host(app, run_in_request, EVENT)
    token = issue(app, host, add_guest(app, host))["token"]
    assert "Reply by</dt><dd>Saturday 1 June 2030, 12:00 BST</dd>" in app.get(f"/access/{token}").text
    app.patch_json(host["url"], {"rsvp_deadline": "2030-06-02T09:30:00"}, headers=host["ada"])
    page = app.get(f"/access/{token}").text
    assert "Reply by</dt><dd>Sunday 2 June 2030, 09:30 BST</dd>" in page
    assert "until Sunday 2 June 2030, 09:30 BST." not in page  # no answer yet: no "change until"
    answer(app, token, "maybe")
    assert "you can change your answer until Sunday 2 June 2030, 09:30 BST." in app.get(f"/access/{token}").text
