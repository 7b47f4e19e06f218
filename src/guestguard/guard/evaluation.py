"""How well the access rules tell shared links from ordinary guests,
measured on the scenario corpus (``corpus.yaml`` beside this module).

Every scenario is replayed through the real application: a host's event
and one guest per scenario made through the API, then each step as a
request to the invitation page, the RSVP form or the calendar download,
from the step's address (behind a trusted proxy) with its user agent, at
its time (the clock is moved, so the rules see the same spacing as in
life). The rules run as in production, after each request's commit; the
flags they raise are the verdict. Needs the test extra (WebTest,
time-machine, PyYAML): ``pip install guestguard[test]``.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import itertools
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from guestguard.guard.feedback import text_table
from guestguard.guard.sensitivity import NORMAL, SENSITIVITIES  # noqa: F401 - SENSITIVITIES for the command

ORDINARY, SHARED = "ordinary", "shared"
LABELS = (ORDINARY, SHARED)
TUNING, HELD_OUT = "tuning", "held-out"
SPLITS = (TUNING, HELD_OUT)
ACTIONS = ("view", "rsvp", "calendar", "resend")
PROXY = "10.0.0.1"
START = dt.datetime(2030, 3, 1, 9, 0, tzinfo=dt.UTC)
SLOT = dt.timedelta(days=10)   # each scenario's own stretch of time, apart from the others'
EVENT = {"name": "Spring Gala", "status": "published", "starts_at": "2031-06-21T19:00:00",
         "timezone": "Europe/London", "default_plus_ones": 2}
OVERALL = "any rule"
DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
STEP_KEYS = {"plus_ones", "response", "link", "repeat", "every"}


class CorpusError(ValueError):
    """The corpus file says something this module cannot replay."""


def duration(text: str) -> dt.timedelta:
    """``0``, ``90s``, ``12m``, ``1d4h``: a time since the scenario began."""
    match = DURATION.fullmatch(text)
    if text == "0":
        return dt.timedelta(0)
    if not text or match is None:
        raise CorpusError(f"not a duration: {text!r} (write 0, 90s, 12m, 3h, 2d or 1d4h)")
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return dt.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


@dataclasses.dataclass(frozen=True)
class Step:
    at: dt.timedelta
    action: str
    user_agent: str = ""
    ip: str = ""
    plus_ones: int = 0
    response: str = "yes"
    old_link: bool = False


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    label: str
    split: str
    story: str
    steps: tuple[Step, ...]
    phone: str = ""


@dataclasses.dataclass(frozen=True)
class NetworkRecord:
    """What a network database says of a range."""

    cidr: str
    asn: int
    country: str
    connection: str
    operator: str


@dataclasses.dataclass(frozen=True)
class Corpus:
    scenarios: tuple[Scenario, ...]
    networks: tuple[NetworkRecord, ...] = ()


def parse_step(line: str, agents: Mapping[str, str], where: str) -> list[Step]:
    words = str(line).split()
    if len(words) < 2:
        raise CorpusError(f"{where}: a step needs a time and an action: {line!r}")
    at, action, rest = duration(words[0]), words[1], words[2:]
    if action not in ACTIONS:
        raise CorpusError(f"{where}: unknown action {action!r}; one of {', '.join(ACTIONS)}")
    if action == "resend":
        if rest:
            raise CorpusError(f"{where}: resend takes nothing more: {line!r}")
        return [Step(at, action)]
    if len(rest) < 2:
        raise CorpusError(f"{where}: {action} needs an agent and an address: {line!r}")
    agent, ip, options = rest[0], rest[1], dict(word.split("=", 1) for word in rest[2:] if "=" in word)
    if agent not in agents:
        raise CorpusError(f"{where}: unknown agent {agent!r}")
    unknown = set(options) - STEP_KEYS or {word for word in rest[2:] if "=" not in word}
    if unknown:
        raise CorpusError(f"{where}: unknown option(s) {', '.join(sorted(unknown))}")
    repeat = int(options.get("repeat", 1))
    every = duration(options.get("every", "0"))
    step = Step(at, action, agents[agent], ip, int(options.get("plus_ones", 0)), options.get("response", "yes"),
                options.get("link") == "old")
    return [dataclasses.replace(step, at=at + n * every) for n in range(repeat)]


def parse_network(line: str) -> NetworkRecord:
    words = str(line).split()
    if len(words) < 5 or not words[1].isdigit() or len(words[2]) != 2:
        raise CorpusError(f"a network is '<range> <ASN> <country> <connection> <operator>': {line!r}")
    try:
        cidr = str(ipaddress.ip_network(words[0], strict=False))
    except ValueError:
        raise CorpusError(f"not an address range: {words[0]!r}") from None
    return NetworkRecord(cidr, int(words[1]), words[2], words[3], " ".join(words[4:]))


def load_corpus(path: str | Path | None = None) -> Corpus:
    """The scenarios and networks of ``path`` (default: the corpus shipped
    with the guard)."""
    import yaml

    text = (Path(path).read_text() if path is not None
            else resources.files("guestguard.guard").joinpath("corpus.yaml").read_text())
    data = yaml.safe_load(text)
    agents = data.get("user_agents") or {}
    scenarios, names = [], set()
    for raw in data.get("scenarios") or []:
        name = raw.get("name", "")
        if not name or name in names:
            raise CorpusError(f"every scenario needs a name of its own: {name!r}")
        names.add(name)
        if raw.get("label") not in LABELS or raw.get("split") not in SPLITS:
            raise CorpusError(f"scenario {name}: label must be one of {LABELS}, split one of {SPLITS}")
        steps = [step for line in raw.get("steps") or [] for step in parse_step(line, agents, f"scenario {name}")]
        if not steps:
            raise CorpusError(f"scenario {name} has no steps")
        if any(later.at < earlier.at for earlier, later in itertools.pairwise(steps)):
            raise CorpusError(f"scenario {name}: steps must be in time order")
        if steps[-1].at >= SLOT:
            raise CorpusError(f"scenario {name} lasts longer than {SLOT.days} days")
        scenarios.append(Scenario(name, raw["label"], raw["split"], raw.get("story", ""), tuple(steps),
                                  str(raw.get("phone") or "")))
    return Corpus(tuple(scenarios), tuple(parse_network(line) for line in data.get("networks") or []))


def write_network_database(networks: Sequence[NetworkRecord], path: str | Path) -> None:
    """A MaxMind-format database holding ``networks`` (as GeoLite2 ASN,
    Country and GeoIP2 Connection-Type would describe them)."""
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GuestGuard-Evaluation",
                        description={"en": "networks of the guard's scenario corpus"})
    for record in networks:
        writer.insert_network(IPSet([record.cidr]), {
            "autonomous_system_number": record.asn, "autonomous_system_organization": record.operator,
            "country": {"iso_code": record.country}, "connection_type": record.connection})
    writer.to_db_file(str(path))


# --- replaying ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What the rules made of one scenario: each rule's highest score, and
    the evidence of its flag."""

    scenario: Scenario
    scores: Mapping[str, int]
    evidence: Mapping[str, str]

    @property
    def flagged(self) -> bool:
        return bool(self.scores)


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Every scenario's outcome, and the rules that were in force."""

    outcomes: tuple[Outcome, ...]
    rules: tuple[str, ...]
    networks: str = ""   # whether a network database was configured
    sensitivity: str = NORMAL


def replay(corpus: Corpus, settings: Mapping[str, str] | None = None,
           plugins: Iterable[tuple[str, object]] = (), db_url: str | None = None,
           network_database: bool = True, sensitivity: str = NORMAL) -> Evaluation:
    """Run every scenario through a fresh application with the test settings
    plus ``settings``, on ``db_url`` (a migrated database holding no users
    yet) or else a scratch SQLite database; with a network database made of
    the corpus's networks unless ``network_database`` is False; the host's
    workspace set to ``sensitivity``. Each scenario is a guest of an event
    of its own (two scenarios' guests may share a phone number)."""
    import time_machine

    from guestguard import make_config
    from guestguard.testing import migrate, new_client, settings_for

    with tempfile.TemporaryDirectory(prefix="guestguard-evaluate-") as directory:
        url = db_url or f"sqlite:///{directory}/evaluate.sqlite"
        if db_url is None:
            migrate(url)
        raw = {**settings_for(url), "app.trusted_proxies": PROXY, **(settings or {})}
        if network_database and corpus.networks:
            write_network_database(corpus.networks, f"{directory}/networks.mmdb")
            raw["guard.network_databases"] = f"{directory}/networks.mmdb"
        wsgi = make_config(raw, environ={}, extra_plugins=plugins).make_wsgi_app()
        try:
            app = new_client(wsgi)
            with time_machine.travel(START, tick=False) as clock:
                host = _host(app, wsgi.registry)
                app.put_json(f"/api/v1/workspaces/{host['workspace']}/guard", {"sensitivity": sensitivity},
                             headers=host["ada"])
                outcomes = []
                for number, scenario in enumerate(corpus.scenarios):
                    start = START + (number + 1) * SLOT
                    clock.move_to(start)
                    outcomes.append(_play(app, host, scenario, start, clock))
            rules = tuple(rule.name for rule in wsgi.registry["guard.rules"])
        finally:
            wsgi.registry["db.engine"].dispose()
    return Evaluation(tuple(outcomes), rules, "network database" if "guard.network_databases" in raw else
                      "no network database", sensitivity)


def _host(app, registry) -> dict[str, Any]:
    from guestguard.testing import event_host, in_request

    return event_host(app, lambda func, registry_=None: in_request(registry_ or registry, func), EVENT)


def _play(app, host: dict[str, Any], scenario: Scenario, start: dt.datetime, clock) -> Outcome:
    from guestguard.testing import bearer_for

    ada = bearer_for(app, "ada@example.com")  # a fresh sign-in: the clock has moved
    event = app.post_json("/api/v1/events", {"workspace_id": host["workspace"], **EVENT}, headers=ada).json["event"]
    host = {**host, "url": f"/api/v1/events/{event['id']}"}
    fields = {"name": scenario.name, "email": f"{scenario.name}@example.com"}
    if scenario.phone:
        fields["phone"] = scenario.phone
    guest = app.post_json(f"{host['url']}/guests", fields, headers=ada, status=201).json["guest"]
    tokens = [app.post_json(f"{host['url']}/guests/{guest['id']}/tokens", {}, headers=ada, status=201).json["token"]]
    for step in scenario.steps:
        clock.move_to(start + step.at)
        if step.action == "resend":
            ada = bearer_for(app, "ada@example.com")
            tokens.append(app.post_json(f"{host['url']}/guests/{guest['id']}/tokens", {}, headers=ada,
                                        status=201).json["token"])
            continue
        token = tokens[-2] if step.old_link and len(tokens) > 1 else tokens[-1]
        headers = {"X-Forwarded-For": step.ip, "User-Agent": step.user_agent}
        environ = {"REMOTE_ADDR": PROXY}
        if step.action == "view":
            app.get(f"/access/{token}", headers=headers, extra_environ=environ, status="*")
        elif step.action == "calendar":
            app.get(f"/access/{token}/event.ics", headers=headers, extra_environ=environ, status="*")
        else:
            form = {"response": step.response, "plus_ones": str(step.plus_ones)}
            app.post(f"/rsvp/{token}", form, headers=headers, extra_environ=environ, status="*")
    flags = app.get(f"{host['url']}/flags", params={"guest_id": guest["id"], "limit": 100},
                    headers=bearer_for(app, "ada@example.com")).json["flags"]
    scores: dict[str, int] = {}
    evidence: dict[str, str] = {}
    for flag in flags:
        if flag["score"] >= scores.get(flag["rule"], 0):
            scores[flag["rule"]], evidence[flag["rule"]] = flag["score"], flag["evidence"]
    return Outcome(scenario, scores, evidence)


# --- measuring -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Measure:
    """One rule (or every rule together) on one half of the corpus."""

    rule: str
    split: str
    shared: int            # scenarios labelled shared
    ordinary: int          # scenarios labelled ordinary
    true_positives: int    # shared scenarios the rule flagged
    false_positives: int   # ordinary scenarios the rule flagged

    @property
    def flagged(self) -> int:
        return self.true_positives + self.false_positives

    @property
    def precision(self) -> float | None:
        return self.true_positives / self.flagged if self.flagged else None

    @property
    def recall(self) -> float | None:
        return self.true_positives / self.shared if self.shared else None

    @property
    def false_positive_rate(self) -> float | None:
        return self.false_positives / self.ordinary if self.ordinary else None


def in_split(outcomes: Sequence[Outcome], split: str) -> list[Outcome]:
    """The outcomes of one half (``all``: of both)."""
    return [o for o in outcomes if split in ("all", o.scenario.split)]


def measure(outcomes: Sequence[Outcome], split: str, rules: Iterable[str]) -> list[Measure]:
    """Each rule's measure on ``split`` (``all`` for both halves), then
    every rule together (a scenario any rule flagged)."""
    chosen = in_split(outcomes, split)
    shared = [o for o in chosen if o.scenario.label == SHARED]
    ordinary = [o for o in chosen if o.scenario.label == ORDINARY]

    def one(name: str, fired) -> Measure:
        return Measure(name, split, len(shared), len(ordinary), sum(map(fired, shared)), sum(map(fired, ordinary)))

    found = sorted({rule for o in outcomes for rule in o.scores} | set(rules))
    return ([one(rule, lambda o, rule=rule: rule in o.scores) for rule in found]
            + [one(OVERALL, lambda o: o.flagged)])


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(measures: Sequence[Measure]) -> str:
    """The measures as a plain-text table."""
    head = ("rule", "flagged", "true+", "false+", "precision", "recall", "false+ rate")
    rows = [(m.rule, str(m.flagged), str(m.true_positives), str(m.false_positives), _ratio(m.precision),
             _ratio(m.recall), _ratio(m.false_positive_rate)) for m in measures]
    return text_table(head, rows)


def report(evaluation: Evaluation, *, verbose: bool = False) -> str:
    """Both halves' tables (and, when ``verbose``, every scenario's verdict)."""
    outcomes, rules = evaluation.outcomes, evaluation.rules
    parts = [(f"rules: {', '.join(rules)}; {evaluation.networks or 'networks as configured'}; "
              f"sensitivity {evaluation.sensitivity}")]
    for split in (*SPLITS, "all"):
        chosen = in_split(outcomes, split)
        shared = sum(o.scenario.label == SHARED for o in chosen)
        title = {"all": "whole corpus"}.get(split, f"{split} half")
        parts.append(f"{title}: {len(chosen)} scenarios ({shared} shared, {len(chosen) - shared} ordinary)\n"
                     + table(measure(outcomes, split, rules)))
    if verbose:
        lines = []
        for o in outcomes:
            right = o.flagged == (o.scenario.label == SHARED)
            verdict = ", ".join(f"{rule} {score}" for rule, score in sorted(o.scores.items())) or "not flagged"
            lines.append(f"{'  ' if right else '! '}{o.scenario.name} [{o.scenario.label}, {o.scenario.split}]: "
                         f"{verdict}")
            lines += [f"      {rule}: {text}" for rule, text in sorted(o.evidence.items())]
        parts.append("scenarios (! = wrong)\n" + "\n".join(lines))
    return "\n\n".join(parts)


def by_sensitivity(evaluations: Sequence[Evaluation]) -> str:
    """Every rule together, on each half, at each sensitivity evaluated."""
    head = ("sensitivity", "half", "flagged", "true+", "false+", "precision", "recall", "false+ rate")
    rows = []
    for evaluation in evaluations:
        for split in (*SPLITS, "all"):
            m = measure(evaluation.outcomes, split, ())[-1]
            rows.append((evaluation.sensitivity, {"all": "whole"}.get(split, split), str(m.flagged),
                         str(m.true_positives), str(m.false_positives), _ratio(m.precision), _ratio(m.recall),
                         _ratio(m.false_positive_rate)))
    return text_table(head, rows)
