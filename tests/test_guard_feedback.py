"""What hosts made of the flags, per rule: dismissed (harmless) or
confirmed (revoked and reissued), as `guestguard guard report` and the
guard_flag_reviews_total metric give them."""
import datetime as dt
import uuid

import pytest
from prometheus_client import REGISTRY

from guestguard.guard.feedback import RuleFeedback, report, rule_feedback
from guestguard.testing import add_guest, command_in_process, event_host, issue, site_ini

PROXY = "10.0.0.1"
EVENT = {"name": "Midsummer Gala", "status": "published", "starts_at": "2030-06-21T19:00:00",
         "timezone": "Europe/London"}
AGENTS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
          ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 "
          "Safari/605.1.15"),
          "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
          ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
          "Safari/537.36"))


@pytest.fixture
def app(make_app):
    return make_app({"app.trusted_proxies": PROXY})


def shared(app, host, n):
    """A guest whose link four people on four networks opened: flagged."""
    guest = add_guest(app, host, name=f"Guest {n}", email=f"guest{n}@example.com")
    token = issue(app, host, guest)["token"]
    for k, agent in enumerate(AGENTS):
        app.get(f"/access/{token}", headers={"X-Forwarded-For": f"198.51.{n}{k}.7", "User-Agent": agent},
                extra_environ={"REMOTE_ADDR": PROXY})
    return {flag["rule"]: flag for flag in app.get(f"{host['url']}/flags", params={"guest_id": guest["id"]},
                                                   headers=host["ada"]).json["flags"]}


def reviews(rule, verdict):
    return REGISTRY.get_sample_value("guard_flag_reviews_total", {"rule": rule, "verdict": verdict}) or 0


def test_each_rules_precision_as_the_hosts_judged_it(app, run_in_request):
    host = event_host(app, run_in_request, EVENT)
    dismissed, confirmed, _ = shared(app, host, 1), shared(app, host, 2), shared(app, host, 3)
    before = reviews("networks", "dismissed"), reviews("networks", "resolved")
    app.post_json(f"{host['url']}/flags/{dismissed['networks']['id']}/dismiss", {}, headers=host["ada"])
    app.post_json(f"{host['url']}/flags/{confirmed['networks']['id']}/reissue", {}, headers=host["ada"], status=202)
    found = {f.rule: f for f in run_in_request(lambda request: rule_feedback(request.db))}
    # The reissue resolved that guest's devices flag too: a confirmation of both rules.
    assert found["networks"] == RuleFeedback("networks", open=1, dismissed=1, resolved=1)
    assert found["networks"].precision == 0.5 and found["networks"].raised == 3
    assert found["devices"] == RuleFeedback("devices", open=2, dismissed=0, resolved=1)
    assert found["devices"].precision == 1.0
    assert (reviews("networks", "dismissed"), reviews("networks", "resolved")) == (before[0] + 1, before[1] + 1)
    # Filters: another workspace has none, nor has the future.
    assert run_in_request(lambda request: rule_feedback(request.db, workspace_id=uuid.uuid4())) == []
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    assert run_in_request(lambda request: rule_feedback(request.db, since=later)) == []
    text = report([found["networks"], RuleFeedback("burst", 2, 0, 0)])
    assert text.splitlines()[1].split() == ["networks", "3", "1", "1", "1", "0.50"]
    assert text.splitlines()[2].split() == ["burst", "2", "2", "0", "0", "-"], "no review, no precision"


def test_the_report_command(tmp_path, capsys):
    ini = site_ini(tmp_path)
    assert command_in_process("migrate", str(ini)) == 0
    assert command_in_process("guard", "report", str(ini), "--days", "30") == 0
    out = capsys.readouterr().out
    assert "flags raised in the last 30 days" in out and "no flags raised in this period" in out
    assert command_in_process("guard", "report", str(ini), "--workspace", "nope") == 2
    assert "not a workspace id" in capsys.readouterr().err
