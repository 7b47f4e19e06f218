"""The guard on the host's pages: the live feed and flagged guests on the
event page, flags and link use on the guest's page, dismissing and
reissuing from there."""
import pytest
from bs4 import BeautifulSoup

from guestguard.testing import csrf, event_host, signed_in

PROXY = "10.0.0.1"
BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
EVENT = {"name": "Midsummer Gala", "status": "published", "starts_at": "2030-06-21T19:00:00",
         "timezone": "Europe/London"}


@pytest.fixture
def app(make_app):
    return make_app({"app.trusted_proxies": PROXY})


@pytest.fixture
def gala(app, run_in_request):
    """Ada's event with two guests; Grace's link was opened from four networks."""
    host = event_host(app, run_in_request, EVENT)
    ada, event, url = host["ada"], host["event"], host["url"]
    grace, alan = app.post_json(f"{url}/guests", [{"name": "Grace Hopper", "email": "grace@example.com"},
                                                   {"name": "Alan Turing", "email": "alan@example.com"}],
                                headers=ada, status=201).json["guests"]
    token = app.post_json(f"{url}/guests/{grace['id']}/tokens", {}, headers=ada, status=201).json["token"]
    for n in range(4):
        app.get(f"/access/{token}", headers={"X-Forwarded-For": f"203.0.{n}.9", "User-Agent": BROWSER},
                extra_environ={"REMOTE_ADDR": PROXY})
    (flag,) = app.get(f"{url}/flags", headers=ada).json["flags"]
    return {"event": event, "grace": grace, "alan": alan, "flag": flag, "token": token, "ada": ada,
            "page": f"/events/{event['id']}", "guest_page": f"/events/{event['id']}/guests/{grace['id']}"}


def soup(page):
    return BeautifulSoup(page.text, "html.parser")


def test_the_event_page_shows_the_live_feed_and_the_flagged_guest(app, gala, run_in_request):
    ada = signed_in(app, run_in_request, "ada@example.com")
    page = soup(ada.get(gala["page"]))
    feed = page.find(id="activity")
    assert feed["data-event-id"] == gala["event"]["id"]
    assert feed["data-ticket-url"] == "/api/v1/auth/stream-ticket"
    assert feed["data-feed-url"] == f"/api/v1/events/{gala['event']['id']}/activity"
    tallies = {cell["data-count"]: cell.get_text() for cell in page.select("[data-count]")}
    assert tallies == {"expected": "0", "yes": "0", "maybe": "0", "no": "0", "pending": "2", "invited": "0",
                       "opened": "1", "not_opened": "0"}
    items = [item.get_text(" ", strip=True) for item in feed.find_all("li")]
    assert items[0].startswith("Grace Hopper's link was flagged: opened from 4 different networks")
    assert items[1].startswith("Grace Hopper opened the invitation")
    assert feed.find("ol")["aria-live"] == "polite"
    assert page.find("script", src=lambda src: src and src.endswith("/static/activity.js"))
    notice = page.find(class_="flag-notice").get_text(" ", strip=True)
    assert notice.startswith("1 guest’s link looks shared or forwarded.")
    rows = {row.find("a").get_text(): row for row in page.select(".guest-list .row")}
    assert rows["Grace Hopper"].find(class_="badge-flag").get_text() == "Flagged"
    assert rows["Alan Turing"].find(class_="badge-flag") is None
    flagged = soup(ada.get(gala["page"], params={"response": "flagged"}))
    assert [row.find("a").get_text() for row in flagged.select(".guest-list .row")] == ["Grace Hopper"]
    assert any("Showing guests flagged for review" in p.get_text(" ", strip=True)
               for p in flagged.find_all(role="status"))


def test_the_guest_page_explains_the_flag_and_the_links_use(app, gala, run_in_request):
    ada = signed_in(app, run_in_request, "ada@example.com")
    page = soup(ada.get(gala["guest_page"]))
    flag = page.select_one(".flags .flag-open")
    assert "Many networks" in flag.find(class_="row-title").get_text()
    assert flag.find(class_="flag-evidence").get_text().startswith("Opened from 4 different networks within ")
    summary = page.select_one(".flags .flag-summary")
    assert summary.get_text(" ", strip=True).startswith("1 sign needs your review. Ask the guest; if they did not "
                                                         "mean to share it")
    assert flag.find(class_="flag-advice") is None, "the advice every flag shares is said once, above them"
    assert [button.get_text() for button in summary.find_all("button")] == ["Revoke link and send a new one"]
    assert [button.get_text() for button in flag.find_all("button")] == ["Dismiss “Many networks”"]
    uses = page.find("table", class_="uses")
    assert len(uses.find("tbody").find_all("tr")) == 4
    assert "203.0.3.0/24" in uses.get_text() and "Chrome on Windows" in uses.get_text()
    assert "Opened 4 times" in page.find(id="uses-title").find_next("p").get_text()


def test_the_host_dismisses_a_flag_from_the_guest_page(app, gala, run_in_request):
    ada = signed_in(app, run_in_request, "ada@example.com")
    page = ada.get(gala["guest_page"])
    action = f"/events/{gala['event']['id']}/flags/{gala['flag']['id']}/dismiss"
    ada.post(action, {}, status=400)  # no CSRF token
    done = ada.post(action, {"csrf_token": csrf(page)}, status=303).follow()
    assert "Flag dismissed" in done.text
    assert soup(done).select_one(".flags .flag-dismissed")
    assert not soup(ada.get(gala["page"])).find(class_="flag-notice")
    again = ada.post(action, {"csrf_token": csrf(page)}, status=303).follow()
    assert "already dismissed" in again.text


def test_the_host_revokes_and_reissues_the_link_in_one_action(app, gala, run_in_request):
    ada = signed_in(app, run_in_request, "ada@example.com")
    page = ada.get(gala["guest_page"])
    action = f"/events/{gala['event']['id']}/flags/{gala['flag']['id']}/reissue"
    done = ada.post(action, {"csrf_token": csrf(page)}, status=303).follow()
    assert "The old link no longer works. Grace Hopper gets a new one by email." in done.text
    app.get(f"/access/{gala['token']}", status=404)
    console = app.app.registry["notifications.providers_by_name"]["console"]
    assert [m.recipient for _, m in console.messages] == ["grace@example.com"]
    assert soup(done).select_one(".flags .flag-resolved")


def test_door_staff_see_flags_but_cannot_act(app, gala, run_in_request):
    sam = signed_in(app, run_in_request, "sam@example.com")
    page = sam.get(gala["guest_page"])
    assert soup(page).select_one(".flags .flag-open") and not soup(page).select(".flags button")
    token = csrf(sam.get("/dashboard"))
    sam.post(f"/events/{gala['event']['id']}/flags/{gala['flag']['id']}/dismiss", {"csrf_token": token},
             status=403)


def test_the_page_gets_a_stream_ticket_with_its_session_cookie(app, gala, run_in_request):
    ada = signed_in(app, run_in_request, "ada@example.com")
    body = ada.post_json("/api/v1/auth/stream-ticket", {"event_id": gala["event"]["id"]}, status=201).json
    assert body["stream_url"].startswith(f"/events/{gala['event']['id']}/activity/stream?ticket=ggt_")
    feed = ada.get(f"/api/v1/events/{gala['event']['id']}/activity").json
    assert [item["kind"] for item in feed["items"]] == ["invitation.opened", "access.flagged"]
