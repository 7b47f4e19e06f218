"""The ``guestguard`` command: ``guestguard <command> <ini> [options]``."""
from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from pyramid.paster import get_appsettings, setup_logging

from guestguard.plugins import PluginLoadError, describe_plugins
from guestguard.settings import SettingsError

log = logging.getLogger("guestguard.cli")


def _config(ini: str):
    from guestguard import make_config

    setup_logging(ini)
    return make_config(get_appsettings(ini, name="main"))


@contextlib.contextmanager
def _transaction(ini: str) -> Iterator:
    """The service context of the app ``ini`` configures, inside one
    transaction that commits when the block ends (aborts on an exception)."""
    from pyramid.scripting import prepare

    from guestguard import rls

    app = _config(ini).make_wsgi_app()
    with prepare(registry=app.registry) as env:
        # The operator's commands work across workspaces (row-level security).
        rls.set_scope(env["request"].db, rls.SYSTEM)
        with env["request"].tm:
            yield env["request"].ctx


def alembic_config(ini: str):
    """Alembic's configuration from the app's ini file. The scripts are this
    code's own ``migrations/`` unless ``[alembic]`` names ``script_location``;
    a location that holds no migrations is a SettingsError naming it."""
    from alembic.config import Config

    from guestguard.db import default_migrations_dir

    config = Config(ini)
    if not config.file_config.has_section(config.config_ini_section):
        config.file_config.add_section(config.config_ini_section)
    location = config.get_main_option("script_location")
    if not location:
        config.set_main_option("script_location", str(default_migrations_dir()).replace("%", "%%"))
    elif not Path(location, "env.py").is_file():
        raise SettingsError(f"setting 'script_location' in [alembic] of {ini} ({location}) is not a "
                            "migrations directory: it has no env.py (leave it out to use this "
                            "installation's migrations)")
    return config


def cmd_migrate(args) -> int:
    from alembic import command
    from alembic.util import CommandError

    config = alembic_config(args.ini)
    try:
        command.upgrade(config, args.revision)
    except CommandError as exc:
        print(f"guestguard: migrate: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_worker(args) -> int:
    from guestguard.tasks import run_worker

    config = _config(args.ini)
    config.make_wsgi_app()  # commits the configuration: tasks are registered
    return run_worker(config.registry, args.workers or None)


def cmd_plugins(args) -> int:
    config = _config(args.ini)
    pm = config.registry["plugins"]
    for info in describe_plugins(pm):
        print(f"{info.name}  ({info.distribution} {info.version})")
        print(f"    hooks: {', '.join(info.hooks) or '(none)'}")
    providers = config.registry["notifications.providers"]
    fallbacks = config.registry["notifications.fallbacks"]
    print("notification channels: " + ", ".join(
        f"{channel} -> {provider.name}" + (f" (fallback {fallbacks[channel].name})" if channel in fallbacks else "")
        for channel, provider in sorted(providers.items())))
    print(f"captcha verifier: {config.registry['captcha.verifier'].name}")
    return 0


def cmd_settings(args) -> int:
    config = _config(args.ini)
    reader = config.registry["settings.reader"]
    for name, value in reader.public_view(config.registry.settings).items():
        print(f"{name} = {value!r}")
    return 0


def cmd_app_role(args) -> int:
    """Print the SQL that makes the application's PostgreSQL role, for the
    operator to run as the tables' owner (``| psql "$OWNER_URL"``)."""
    from guestguard import read_settings
    from guestguard.rls import app_role_statements

    settings, _pm, _reader = read_settings(get_appsettings(args.ini, name="main"))
    if not settings["db.url"].startswith("postgresql"):
        print("guestguard: app-role: row-level security is PostgreSQL's; db.url is not a PostgreSQL URL",
              file=sys.stderr)
        return 2
    try:
        statements = app_role_statements(args.role)
    except ValueError as exc:
        print(f"guestguard: app-role: {exc}", file=sys.stderr)
        return 2
    print("\n".join(f"{statement};" for statement in statements))
    return 0


def cmd_send_test(args) -> int:
    """Queue a test message through the outbox (checks provider settings)."""
    from guestguard.notifications.services import queue_notification

    with _transaction(args.ini) as ctx:
        notification = queue_notification(ctx, channel=args.channel, recipient=args.to, template="test_message",
                                          context={"base_url": ctx.settings["app.base_url"]})
        notification_id = notification.id
    print(f"queued notification {notification_id}; a worker delivers it")
    return 0


def cmd_create_admin(args) -> int:
    """Create (or promote) a platform admin: the only way to get one."""
    import getpass

    from guestguard.accounts.passwords import password_problem
    from guestguard.accounts.services import create_admin
    from guestguard.validation import normalize_email

    try:
        email = normalize_email(args.email)
    except ValueError as exc:
        print(f"guestguard: --email: {exc}", file=sys.stderr)
        return 2
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("guestguard: the passwords differ", file=sys.stderr)
            return 2
    problem = password_problem(password, email)
    if problem:
        print(f"guestguard: the password {problem}", file=sys.stderr)
        return 2
    with _transaction(args.ini) as ctx:
        user = create_admin(ctx, email=email, password=password, display_name=args.name or email.split("@")[0])
        user_id = user.id
    print(f"{email} is an admin (user {user_id})")
    return 0


def cmd_events_list(args) -> int:
    """Domain events of one status (or all), oldest first."""
    from guestguard.domain import listing

    with _transaction(args.ini) as ctx:
        lines = [_job_line(row, row.occurred_at, row.name, row.aggregate or "-", row.last_error)
                 for row in listing(ctx, args.status, args.limit)]
    return _print_listing(lines, args.status, "domain events")


def _job_line(row, at, *fields: str | None) -> str:
    """One durable job for a listing: id, status, attempts, time, then
    ``fields`` (the last one, an error or a note, on one line and cut)."""
    *named, said = fields
    return "  ".join((str(row.id), row.status, f"attempts={row.attempts}", at.isoformat(timespec="seconds"),
                      *named, " ".join((said or "").split())[:200]))


def _print_listing(lines: list[str], status: str | None, what: str) -> int:
    for line in lines:
        print(line)
    if not lines:
        print(f"no {status + ' ' if status else ''}{what}", file=sys.stderr)
    return 0


def cmd_events_replay(args) -> int:
    """Put dead events back to pending and queue their delivery."""
    from guestguard.domain import replay

    return _replay(args, "events", "event", args.dead, "--dead", replay, "domain_event",
                   "domain event(s) queued again; a worker delivers them")


def cmd_webhooks_list(args) -> int:
    """Stored provider webhooks of one status (or all), oldest first."""
    from guestguard.webhooks.services import listing

    with _transaction(args.ini) as ctx:
        lines = [_job_line(row, row.received_at, row.provider, row.event_id, row.last_error or row.note)
                 for row in listing(ctx, args.status, args.provider, args.limit)]
    return _print_listing(lines, args.status, "webhooks")


def cmd_webhooks_replay(args) -> int:
    """Process failed webhooks again."""
    from guestguard.webhooks.services import replay

    return _replay(args, "webhooks", "webhook", args.failed, "--failed", replay, "webhook",
                   "webhook(s) queued again; a worker processes them")


def _replay(args, command: str, what: str, every: bool, every_flag: str, replay, audited: str,
            done: str) -> int:
    """``guestguard <command> replay``: the one named by ``args.id``, or
    every failed one when ``every``; audited as ``<audited>.replayed``."""
    import uuid

    from guestguard.audit.services import record
    from guestguard.tasks import NotReplayable

    if bool(args.id) == bool(every):
        print(f"guestguard: {command} replay: name one {what} id or {every_flag}", file=sys.stderr)
        return 2
    try:
        ids = None if every else [uuid.UUID(args.id)]
    except ValueError:
        print(f"guestguard: {command} replay: {args.id!r} is not {'an' if what[0] in 'aeiou' else 'a'} {what} id",
              file=sys.stderr)
        return 2
    try:
        with _transaction(args.ini) as ctx:
            rows = replay(ctx, ids)
            for row in rows:
                record(ctx, f"{audited}.replayed", target_type=audited, target_id=row.id,
                       name=getattr(row, "name", None) or getattr(row, "provider", None))
            replayed = [str(row.id) for row in rows]
    except NotReplayable as exc:
        print(f"guestguard: {command} replay: {exc}", file=sys.stderr)
        return 1
    for row_id in replayed:
        print(f"replayed {row_id}")
    print(f"{len(replayed)} {done}")
    return 0


def cmd_suppression(args) -> int:
    """List, add to or lift from the suppression list."""
    import uuid

    from guestguard.notifications import suppression

    try:
        workspace_id = uuid.UUID(args.workspace) if getattr(args, "workspace", None) else None
    except ValueError:
        print(f"guestguard: suppression: --workspace {args.workspace!r} is not a workspace id", file=sys.stderr)
        return 2
    try:
        with _transaction(args.ini) as ctx:
            if args.suppression_command == "list":
                lines = ["  ".join((row.channel, row.address, row.reason, row.source,
                                    "everywhere" if row.scope == suppression.EVERYWHERE else f"workspace {row.scope}",
                                    row.created_at.isoformat(timespec="seconds")))
                         for row in suppression.listed(ctx.db, channel=args.channel, address=args.address,
                                                       limit=args.limit)]
            elif args.suppression_command == "add":
                row = suppression.suppress(ctx, args.channel, args.address, suppression.OPERATOR, source="operator")
                lines = [f"suppressed {row.address} ({row.channel}): {suppression.REASONS[row.reason]}"]
            else:
                lifted = suppression.lift(ctx, args.channel, args.address, workspace_id=workspace_id)
                lines = [f"lifted {lifted} suppression(s) of {args.address} ({args.channel})"]
    except suppression.AddressError as exc:
        print(f"guestguard: suppression: {exc}", file=sys.stderr)
        return 2
    for line in lines:
        print(line)
    if args.suppression_command == "list" and not lines:
        print("no suppressed addresses", file=sys.stderr)
    return 0 if args.suppression_command != "lift" or lifted else 1


def cmd_guard_evaluate(args) -> int:
    """Replay the scenario corpus through a scratch copy of the app with the
    ini's guard settings and plugins, and print how well the rules did."""
    try:
        from guestguard.guard import evaluation
    except ImportError as exc:  # pragma: no cover - the test extra is missing
        print(f"guestguard: guard evaluate needs the test extra (pip install 'guestguard[test]'): {exc}",
              file=sys.stderr)
        return 2
    ini = get_appsettings(args.ini, name="main")
    settings = {name: value for name, value in ini.items() if name.startswith(("guard.", "plugins."))}
    try:
        corpus = evaluation.load_corpus(args.corpus)
    except (OSError, ValueError) as exc:
        print(f"guestguard: guard evaluate: {exc}", file=sys.stderr)
        return 2
    chosen = evaluation.SENSITIVITIES if args.sensitivity == "all" else (args.sensitivity,)
    results = [evaluation.replay(corpus, settings, network_database=not args.no_network_database,
                                 sensitivity=sensitivity) for sensitivity in chosen]
    main = next((r for r in results if r.sensitivity == evaluation.NORMAL), results[0])
    print(evaluation.report(main, verbose=args.verbose))
    if len(results) > 1:
        print("\nevery rule together, by the workspace's sensitivity\n" + evaluation.by_sensitivity(results))
    return 0


def cmd_guard_update_ranges(args) -> int:
    """Fetch the operators' current published ranges into the file
    ``guard.published_ranges`` names (written whole, then moved into place)."""
    import datetime as dt
    import json
    import os
    import tempfile

    from guestguard.guard.signals import builtin_ranges, fetch_url, refresh_ranges

    target = get_appsettings(args.ini, name="main").get("guard.published_ranges", "")
    if not target:
        print("guestguard: guard update-ranges: set guard.published_ranges to the file to write (the ranges "
              "shipped with GuestGuard are not updated in place)", file=sys.stderr)
        return 2
    path = Path(target)
    try:
        current = json.loads(path.read_text()) if path.exists() else builtin_ranges()
        fetch = (lambda url: Path(args.offline, url.rsplit("/", 1)[-1].split("?")[0]).read_text()) \
            if args.offline else fetch_url
        fresh, report = refresh_ranges(current, fetch)
    except (OSError, ValueError, KeyError, SettingsError) as exc:
        print(f"guestguard: guard update-ranges: {exc}", file=sys.stderr)
        return 2
    fresh["updated"] = dt.datetime.now(dt.UTC).date().isoformat()
    handle, scratch = tempfile.mkstemp(dir=path.parent, prefix=".ranges-")
    with os.fdopen(handle, "w") as out:
        json.dump(fresh, out, indent=1)
    Path(scratch).replace(path)
    for line in report:
        print(line)
    print(f"written to {path}; restart the web and worker processes to use them")
    return 0


def cmd_guard_report(args) -> int:
    """Each rule's flags and what the hosts made of them."""
    import datetime as dt
    import uuid

    from guestguard.guard.feedback import report, rule_feedback

    try:
        workspace = uuid.UUID(args.workspace) if args.workspace else None
    except ValueError:
        print(f"guestguard: guard report: not a workspace id: {args.workspace}", file=sys.stderr)
        return 2
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=args.days)
    with _transaction(args.ini) as ctx:
        feedback = rule_feedback(ctx.db, since=since, workspace_id=workspace)
    print(f"flags raised in the last {args.days} days{f' in workspace {workspace}' if workspace else ''}; "
          "confirmed = the host revoked and reissued the link, precision = confirmed / (confirmed + dismissed)")
    print(report(feedback))
    return 0


def cmd_restore_verify(args) -> int:
    """Check a restored database: schema at head, foreign keys, invariants."""
    from alembic.script import ScriptDirectory
    from sqlalchemy.exc import SQLAlchemyError

    from guestguard import rls
    from guestguard.ops.restore_verify import READ_ONLY, report, verify

    config = _config(args.ini)
    script_dir = ScriptDirectory.from_config(alembic_config(args.ini))
    engine = config.registry["db.engine"]
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(READ_ONLY)
            rls.apply_to(connection, rls.SYSTEM)  # the checks count every workspace's rows
            checks = verify(connection, config.registry.settings, script_dir)
            connection.rollback()
    except SQLAlchemyError as exc:
        print(f"FAIL  the database cannot be read: {type(exc).__name__}: {str(exc).splitlines()[0]}")
        return 1
    finally:
        engine.dispose()
    print(report(checks))
    return 0 if all(check.ok for check in checks) else 1


def cmd_privacy_report(args) -> int:
    """What retention would do now and in the notice period; changes nothing."""
    import datetime as dt

    from guestguard.privacy.retention import due_events

    with _transaction(args.ini) as ctx:
        now = dt.datetime.now(dt.UTC)
        notice = dt.timedelta(days=ctx.settings["privacy.retention_notice_days"])
        due = due_events(ctx.db, ctx.settings, now, within=notice)
    now_due = [item for item in due if item.anonymize_on <= now]
    soon = [item for item in due if item.anonymize_on > now]
    print(f"retention: events end + {ctx.settings['privacy.retention_months']} months "
          "(or the workspace's own retention_months); dry run, nothing changed")
    for title, items in ((f"anonymized at the next nightly run: {len(now_due)} event(s)", now_due),
                         (f"anonymized within {notice.days} days: {len(soon)} event(s)", soon)):
        print(title)
        for item in items:
            print(f"  {item.anonymize_on:%Y-%m-%d}  {item.event_id}  {item.guests} guest(s)  workspace "
                  f"{item.workspace_id}  owners told: {'yes' if item.noticed else 'no'}")
    return 0


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number above 0, got {value}")
    return number


def _add_outbox_commands(sub) -> None:
    """``events`` (domain events, the plugins' outbox) and ``webhooks`` (the
    providers' inbox): each lists its rows and replays the failed ones."""
    for command, what, statuses, flag, words, listing, replaying in (
        ("events", "domain event", ("pending", "running", "delivered", "dead"), "--dead", "deliver dead",
         cmd_events_list, cmd_events_replay),
        ("webhooks", "webhook", ("pending", "running", "succeeded", "failed"), "--failed", "process failed",
         cmd_webhooks_list, cmd_webhooks_replay),
    ):
        parser = sub.add_parser(command, help=f"list and replay {what}s")
        commands = parser.add_subparsers(dest=f"{command}_command", required=True)
        listed = commands.add_parser("list", help=f"list {what}s, oldest first")
        listed.add_argument("ini")
        listed.add_argument("--status", choices=statuses)
        if command == "webhooks":
            listed.add_argument("--provider", help="one provider's (ses, twilio...)")
        listed.add_argument("--limit", type=_positive, default=50, help="at most this many (50)")
        listed.set_defaults(func=listing)
        replayed = commands.add_parser("replay", help=f"{words} {what}s again")
        replayed.add_argument("ini")
        replayed.add_argument("id", nargs="?", help=f"the id of one {flag[2:]} {what}")
        replayed.add_argument(flag, action="store_true", help=f"every {flag[2:]} {what}")
        replayed.set_defaults(func=replaying)


def cmd_flags(args) -> int:
    """List feature flags, or switch one on, off or back to its default for a workspace."""
    import uuid

    from guestguard.billing import flags

    try:
        workspace_id = uuid.UUID(args.workspace) if getattr(args, "workspace", None) else None
    except ValueError:
        print(f"guestguard: flags: {args.workspace!r} is not a workspace id", file=sys.stderr)
        return 2
    try:
        with _transaction(args.ini) as ctx:
            if args.flags_command == "list":
                print("on for every workspace by default: " + (", ".join(ctx.settings["flags.defaults"]) or "none"))
                lines = [f"{row.name}  workspace {row.workspace_id}  {'on' if row.enabled else 'off'}"
                         for row in flags.listing(ctx, workspace_id)]
            else:
                state = {"on": True, "off": False, "default": None}[args.flags_command]
                flags.set_flag(ctx, args.name, workspace_id, state)
                lines = [f"{args.name} is {args.flags_command} for workspace {workspace_id}"]
    except ValueError as exc:
        print(f"guestguard: flags: {exc}", file=sys.stderr)
        return 2
    for line in lines:
        print(line)
    return 0


def _add_flags_commands(sub) -> None:
    parser = sub.add_parser("flags", help="feature flags per workspace (billing, ...)")
    commands = parser.add_subparsers(dest="flags_command", required=True)
    listed = commands.add_parser("list", help="the defaults and every workspace's own flags")
    listed.add_argument("ini")
    listed.add_argument("--workspace")
    for name, text in (("on", "switch a flag on for a workspace"), ("off", "switch a flag off for a workspace"),
                       ("default", "let a workspace follow flags.defaults again")):
        command = commands.add_parser(name, help=text)
        command.add_argument("ini")
        command.add_argument("name")
        command.add_argument("workspace")
    parser.set_defaults(func=cmd_flags)


def _add_suppression_commands(sub) -> None:
    suppression = sub.add_parser("suppression", help="list, add or lift suppressed addresses")
    suppression_sub = suppression.add_subparsers(dest="suppression_command", required=True)
    suppression_list = suppression_sub.add_parser("list", help="suppressed addresses, newest first")
    suppression_list.add_argument("ini")
    suppression_list.add_argument("--channel", choices=("email", "sms"))
    suppression_list.add_argument("--address")
    suppression_list.add_argument("--limit", type=_positive, default=100, help="at most this many (100)")
    for name, text in (("add", "stop every message to an address (reason: operator)"),
                       ("lift", "take an address off the list, so messages reach it again")):
        command = suppression_sub.add_parser(name, help=text)
        command.add_argument("ini")
        command.add_argument("channel", choices=("email", "sms"))
        command.add_argument("address")
        if name == "lift":
            command.add_argument("--workspace", help="lift a guest's unsubscribe from this workspace only")
    suppression.set_defaults(func=cmd_suppression)


def _add_guard_commands(sub) -> None:
    guard = sub.add_parser("guard", help="the access rules: how well they tell shared links from guests")
    guard_sub = guard.add_subparsers(dest="guard_command", required=True)
    evaluate = guard_sub.add_parser("evaluate", help="replay the scenario corpus and print precision, recall "
                                    "and false-positive rate per rule, for the tuning and held-out halves")
    evaluate.add_argument("ini", help="the guard.* and plugins.* settings are taken from it (its database is "
                          "not touched: the scenarios run on a scratch one)")
    evaluate.add_argument("--corpus", help="a scenario file of the same format (default: the built-in corpus)")
    evaluate.add_argument("--verbose", action="store_true", help="also each scenario's verdict and evidence")
    evaluate.add_argument("--no-network-database", action="store_true",
                          help="without the corpus's network database: networks are address prefixes")
    evaluate.add_argument("--sensitivity", choices=("relaxed", "normal", "strict", "all"), default="all",
                          help="the host workspace's sensitivity (default: all three; the per-rule tables "
                               "are normal's, then every rule together at each)")
    evaluate.set_defaults(func=cmd_guard_evaluate)
    update = guard_sub.add_parser("update-ranges", help="fetch the address ranges mail scanners, clouds, "
                                  "corporate proxies and privacy relays publish, into guard.published_ranges")
    update.add_argument("ini")
    update.add_argument("--offline", metavar="DIR", help="read each list from DIR (by the last part of its "
                        "address) instead of fetching it, for machines without outside access")
    update.set_defaults(func=cmd_guard_update_ranges)
    feedback = guard_sub.add_parser("report", help="each rule's flags, and how many the hosts dismissed or "
                                    "confirmed (revoke and reissue): its precision as hosts judge it")
    feedback.add_argument("ini")
    feedback.add_argument("--days", type=_positive, default=90, help="flags raised in the last DAYS days (90)")
    feedback.add_argument("--workspace", help="one workspace's flags (its id)")
    feedback.set_defaults(func=cmd_guard_report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="guestguard", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    migrate = sub.add_parser("migrate", help="upgrade the database schema")
    migrate.add_argument("ini")
    migrate.add_argument("--revision", default="head")
    migrate.set_defaults(func=cmd_migrate)

    worker = sub.add_parser("worker", help="run the task consumer")
    worker.add_argument("ini")
    worker.add_argument("--workers", type=int, default=0)
    worker.set_defaults(func=cmd_worker)

    plugins = sub.add_parser("plugins", help="list plugins, versions and hooks")
    plugins.add_argument("ini")
    plugins.set_defaults(func=cmd_plugins)

    settings = sub.add_parser("settings", help="list every setting in force (secrets masked)")
    settings.add_argument("ini")
    settings.set_defaults(func=cmd_settings)

    app_role = sub.add_parser("app-role", help="print the SQL (run it as the tables' owner) that makes the "
                              "application's PostgreSQL role: owns nothing, obeys row-level security")
    app_role.add_argument("ini")
    app_role.add_argument("role", help="the role's name (lower-case letters, digits, underscores)")
    app_role.set_defaults(func=cmd_app_role)

    send_test = sub.add_parser("send-test", help="queue a test email or SMS")
    send_test.add_argument("ini")
    send_test.add_argument("--to", required=True)
    send_test.add_argument("--channel", choices=("email", "sms"), default="email")
    send_test.set_defaults(func=cmd_send_test)

    _add_outbox_commands(sub)
    _add_suppression_commands(sub)
    _add_flags_commands(sub)
    _add_guard_commands(sub)

    restore_verify = sub.add_parser("restore-verify", help="check a restored database: schema at the migration "
                                    "head, foreign keys and invariants (exit 1 on any breach)")
    restore_verify.add_argument("ini")
    restore_verify.set_defaults(func=cmd_restore_verify)

    privacy = sub.add_parser("privacy", help="privacy: what retention will anonymize")
    privacy_sub = privacy.add_subparsers(dest="privacy_command", required=True)
    report = privacy_sub.add_parser("report", help="the events retention anonymizes at the next run and "
                                    "within the notice period (a dry run)")
    report.add_argument("ini")
    report.set_defaults(func=cmd_privacy_report)

    admin = sub.add_parser("create-admin", help="create or promote a platform admin")
    admin.add_argument("ini")
    admin.add_argument("--email", required=True)
    admin.add_argument("--name", default="")
    admin.add_argument("--password-stdin", action="store_true",
                       help="read the password from the first line of standard input")
    admin.set_defaults(func=cmd_create_admin)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not Path(args.ini).is_file():
        print(f"guestguard: no such ini file: {args.ini}", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except (SettingsError, PluginLoadError) as exc:
        print(f"guestguard: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
