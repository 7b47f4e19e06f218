"""The guard's scenario corpus and its evaluation: the corpus is well
formed, scenarios replay through the real invitation pages and rules, and
precision, recall and false-positive rate are counted right."""
import textwrap

import pytest

from guestguard.guard import evaluation
from guestguard.guard.evaluation import CorpusError, Evaluation, Outcome, Scenario, load_corpus, measure
from guestguard.testing import command_in_process

# In one pass only when make test runs both: the rules judge the same uses on either backend.
pytestmark = pytest.mark.one_pass("sqlite")

IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Version/18.1 Mobile/15E148 Safari/604.1")
WINDOWS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
           "Safari/537.36")
SMALL = f"""
user_agents:
  iphone: "{IPHONE}"
  windows: "{WINDOWS}"
scenarios:
  - name: at-home
    label: ordinary
    split: tuning
    story: "Opens twice at home and answers."
    steps:
      - 0 view iphone 86.150.37.112
      - 1h view iphone 86.150.37.112
      - 1h2m rsvp iphone 86.150.37.112 plus_ones=1
  - name: chat-group
    label: shared
    split: held-out
    story: "Five people in five places within minutes."
    steps:
      - 0 view windows 73.41.9.201
      - 1m view windows 86.157.2.66
      - 2m view iphone 177.73.211.19
      - 3m view windows 49.37.203.11
      - 4m view iphone 90.66.71.180
"""


# --- the corpus ------------------------------------------------------------------


def test_the_corpus_has_forty_labelled_scenarios_in_two_halves():
    scenarios = load_corpus().scenarios
    assert len(scenarios) >= 40
    assert len({s.name for s in scenarios}) == len(scenarios)
    for split in evaluation.SPLITS:
        for label in evaluation.LABELS:
            # Each half holds enough of each kind to measure on its own.
            assert sum(s.split == split and s.label == label for s in scenarios) >= 10, (split, label)
    # Real user agents and addresses, never the documentation ranges.
    for scenario in scenarios:
        for step in scenario.steps:
            if step.action != "resend":
                assert step.user_agent and step.ip, scenario.name
                assert not step.ip.startswith(("192.0.2.", "198.51.100.", "203.0.113.", "2001:db8:")), scenario.name


def test_steps_are_read_with_their_times_and_repeats(tmp_path):
    path = tmp_path / "corpus.yaml"
    path.write_text(textwrap.dedent("""
        user_agents:
          bot: "python-requests/2.32.3"
        scenarios:
          - name: poller
            label: shared
            split: tuning
            steps:
              - 1d2h view bot 167.99.45.12 repeat=3 every=90s
              - 2d resend
              - 2d1m view bot 167.99.45.12 link=old
              - 2d2m rsvp bot 167.99.45.12 plus_ones=2 response=maybe
    """))
    (poller,) = load_corpus(path).scenarios
    assert [(step.at.total_seconds(), step.action) for step in poller.steps] == [
        (93600, "view"), (93690, "view"), (93780, "view"), (172800, "resend"), (172860, "view"), (172920, "rsvp")]
    assert poller.steps[4].old_link and not poller.steps[5].old_link
    assert (poller.steps[5].plus_ones, poller.steps[5].response) == (2, "maybe")
    assert poller.steps[0].user_agent == "python-requests/2.32.3"


@pytest.mark.parametrize("step, message", [
    ("soon view bot 1.2.3.4", "not a duration"),
    ("0 open bot 1.2.3.4", "unknown action"),
    ("0 view robot 1.2.3.4", "unknown agent"),
    ("0 view bot", "needs an agent and an address"),
    ("0 view bot 1.2.3.4 colour=red", "unknown option"),
    ("0 resend now", "takes nothing more"),
    ("11d view bot 1.2.3.4", "longer than 10 days"),
])
def test_a_corpus_it_cannot_replay_is_refused_naming_the_step(tmp_path, step, message):
    path = tmp_path / "corpus.yaml"
    path.write_text("user_agents:\n  bot: curl/8.5.0\nscenarios:\n  - name: x\n    label: shared\n"
                    f"    split: tuning\n    steps:\n      - {step}\n")
    with pytest.raises(CorpusError, match=message):
        load_corpus(path)


def test_steps_out_of_order_and_unknown_labels_are_refused(tmp_path):
    path = tmp_path / "corpus.yaml"
    path.write_text("user_agents:\n  bot: curl/8.5.0\nscenarios:\n  - name: x\n    label: shared\n"
                    "    split: tuning\n    steps:\n      - 5m view bot 1.2.3.4\n      - 1m view bot 1.2.3.4\n")
    with pytest.raises(CorpusError, match="time order"):
        load_corpus(path)
    path.write_text("scenarios:\n  - name: x\n    label: suspicious\n    split: tuning\n    steps: []\n")
    with pytest.raises(CorpusError, match="label must be one of"):
        load_corpus(path)


# --- measuring -------------------------------------------------------------------


def outcome(name, label, split, **scores):
    return Outcome(Scenario(name, label, split, "", ()), scores, dict.fromkeys(scores, "evidence"))


def test_precision_recall_and_false_positive_rate_per_rule_and_overall():
    outcomes = [
        outcome("a", "shared", "tuning", networks=60, devices=40),
        outcome("b", "shared", "tuning", devices=40),
        outcome("c", "shared", "tuning"),
        outcome("d", "ordinary", "tuning", networks=45),
        outcome("e", "ordinary", "tuning"),
        outcome("f", "ordinary", "tuning"),
        outcome("g", "ordinary", "tuning"),
        outcome("h", "shared", "held-out", burst=30),
    ]
    by_rule = {m.rule: m for m in measure(outcomes, "tuning", ["networks", "devices", "revoked_link"])}
    networks, devices, overall = by_rule["networks"], by_rule["devices"], by_rule[evaluation.OVERALL]
    assert (networks.precision, networks.recall, networks.false_positive_rate) == (0.5, 1 / 3, 0.25)
    assert (devices.precision, devices.recall, devices.false_positive_rate) == (1.0, 2 / 3, 0.0)
    assert (overall.true_positives, overall.false_positives) == (2, 1)
    assert (overall.precision, overall.recall, overall.false_positive_rate) == (2 / 3, 2 / 3, 0.25)
    # A rule that never fired has no precision, and a rule seen only in
    # the other half is still listed.
    assert by_rule["revoked_link"].precision is None and by_rule["revoked_link"].recall == 0
    assert by_rule["burst"].flagged == 0
    assert {m.rule: m.true_positives for m in measure(outcomes, "all", [])}[evaluation.OVERALL] == 3


def test_the_report_has_both_halves_and_marks_wrong_verdicts():
    outcomes = (outcome("a", "shared", "tuning", networks=60), outcome("d", "ordinary", "held-out", burst=35))
    text = evaluation.report(Evaluation(outcomes, ("networks", "burst")), verbose=True)
    assert "tuning half: 1 scenarios (1 shared, 0 ordinary)" in text
    assert "held-out half: 1 scenarios (0 shared, 1 ordinary)" in text
    assert "  a [shared, tuning]: networks 60" in text
    assert "! d [ordinary, held-out]: burst 35" in text
    tuning, held_out, _ = (line.split()[2:] for line in text.splitlines() if line.startswith("any rule"))
    assert tuning == ["1", "1", "0", "1.00", "1.00", "-"]
    assert held_out == ["1", "0", "1", "0.00", "-", "1.00"]  # no shared scenario; the one ordinary flagged


# --- replaying through the application -----------------------------------------------


def test_scenarios_replay_through_the_invitation_pages_and_rules(tmp_path, module_db_url):
    path = tmp_path / "corpus.yaml"
    path.write_text(SMALL)
    result = evaluation.replay(load_corpus(path), db_url=module_db_url)
    at_home, chat = result.outcomes
    assert not at_home.flagged
    assert chat.scores["networks"] >= 45
    assert "5 different networks" in chat.evidence["networks"]
    assert "networks" in result.rules and "burst" in result.rules
    # The rules in force are those of the settings given.
    again = evaluation.replay(load_corpus(path), {"guard.rules_disabled": "networks"})
    assert "networks" not in again.rules and "networks" not in again.outcomes[1].scores


def test_the_command_prints_both_halves(tmp_path, capsys):
    corpus = tmp_path / "corpus.yaml"
    corpus.write_text(SMALL)
    ini = tmp_path / "guard.ini"
    ini.write_text("[app:main]\nuse = egg:guestguard\ndb.url = sqlite:///nowhere.sqlite\n"
                   "guard.networks.threshold = 5\n")
    assert command_in_process("guard", "evaluate", str(ini), "--corpus", str(corpus), "--verbose") == 0
    out = capsys.readouterr().out
    assert "tuning half: 1 scenarios (0 shared, 1 ordinary)" in out
    assert "held-out half: 1 scenarios (1 shared, 0 ordinary)" in out
    # The ini's threshold (more than 5 networks) is the one applied: 5 are not enough.
    assert "! chat-group [shared, held-out]:" in out
    # Then every rule together at each sensitivity: strict moves the threshold to more than 3 networks
    # (and more than one person), relaxed to more than 7.
    table = out.split("every rule together, by the workspace's sensitivity\n")[1]
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in table.splitlines()[1:]}
    assert rows["relaxed", "held-out"][:2] == ["0", "0"] and rows["normal", "held-out"][:2] == ["0", "0"]
    assert rows["strict", "held-out"] == ["1", "1", "0", "1.00", "1.00", "-"]
    assert rows["strict", "tuning"][2] == "0", "the guest at home stays unflagged even when strict"


def test_the_command_refuses_a_broken_corpus(tmp_path, capsys):
    corpus = tmp_path / "corpus.yaml"
    corpus.write_text("scenarios:\n  - name: x\n    label: odd\n    split: tuning\n")
    ini = tmp_path / "guard.ini"
    ini.write_text("[app:main]\nuse = egg:guestguard\n")
    assert command_in_process("guard", "evaluate", str(ini), "--corpus", str(corpus)) == 2
    assert "label must be one of" in capsys.readouterr().err
