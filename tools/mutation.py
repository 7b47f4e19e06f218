"""Mutation testing of the security-critical modules (``make mutation``).

Each target names the functions to mutate and the tests that exercise them.
A target is run by mutmut in a scratch directory of its own under
``var/mutation/<target>`` (its own ``[mutmut]`` configuration, so each runs
only its tests; mutmut then runs each mutant against the tests that reached
the mutated function). The report gives, per module, the mutants tried,
killed and survived, and the score: killed / (tried - judged equivalent).
The run fails when a module scores below the threshold (90%).

Surviving mutants judged equivalent (no test can tell them from the code,
or the change is harmless) are listed, each with its reason, in
``tests/mutation-equivalents.txt``, matched by function and changed lines,
never by mutmut's mutant number (which shifts when the code does).

    python -m tools.mutation                  # every target
    python -m tools.mutation tokens csrf      # some of them
    python -m tools.mutation --list           # what would run
    python -m tools.mutation --reuse          # only targets changed since their recorded run

Each run of a target with its own tests is recorded in
``tests/mutation-record.json``, keyed by a digest of what decides its
result (the target, the mutated modules, its test files and their
conftests, the test helpers, this tool, the pinned dependencies). With
``--reuse`` a target whose digest matches its record is reported from the
record (scored against the current equivalents) instead of run again.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "var" / "mutation"
EQUIVALENTS = ROOT / "tests" / "mutation-equivalents.txt"
RECORD = ROOT / "tests" / "mutation-record.json"
# Besides a target's own modules and tests, what every target's result
# depends on: the test helpers, the tool, the configuration and the pins.
DECIDING = ("src/guestguard/testing.py", "src/guestguard/testing_processes.py", "development.ini",
            "tools/mutation.py", "setup.cfg", "pyproject.toml", "constraints.txt")
THRESHOLD = 90.0
LINKED = ("tests", "plugins", "conftest.py", "migrations", "templates", "development.ini", "production.ini",
          "pyproject.toml")
KILLED = {1, 3, 24, -24, 152, 255, 36, -11, -9, 37}  # failed, errored, timed out, crashed, refused by types
NO_TESTS = {5, 33}
SHARED_BACKENDS = ("GG_TEST_DATABASE_URL", "GG_TEST_REDIS_URL")


@dataclass(frozen=True)
class Target:
    """What to mutate (module → its functions, ``Class.method`` for
    methods) and the tests that exercise it."""
    name: str
    functions: dict[str, tuple[str, ...]]
    tests: tuple[str, ...]
    # Lines left unmutated (regular expressions), each for a stated reason.
    unmutated: tuple[str, ...] = ()
    # Where the mutated modules live: the core's src, or a plugin's (mutmut
    # mutates under src/ only, so the scratch directory's src points there;
    # the core is then imported as installed).
    source: str = "src"
    # Test helpers of the target's own beside DECIDING's (a plugin's testing module).
    helpers: tuple[str, ...] = ()


# The security-critical core. An area that lands with a check of its own
# (webhook signatures, billing entitlements) adds its target.
PERMISSION_TABLE_TEST = ("tests/test_permissions_matrix.py::"
                         "test_each_permission_is_granted_in_the_workspace_to_exactly_the_roles_the_table_names")

TARGETS = (
    Target("permissions", {"guestguard.permissions": (
        "granted", "member_principal", "api_key_principal", "workspace_acl")},
        (PERMISSION_TABLE_TEST,
         "tests/test_tenant_isolation.py")),
    Target("tokens", {"guestguard.accounts.tokens": ("new_token", "hash_token", "matches", "looks_like_token")},
           ("tests/test_token_shapes.py",)),
    Target("passwords", {"guestguard.accounts.passwords": ("password_problem", "Passwords.verify")},
           ("tests/test_password_rules.py",)),
    Target("sessions", {"guestguard.accounts.sessions": (
        "start_session", "encode_access_token", "decode_access_token", "made_here", "session_from_access_token",
        "session_from_cookie", "_usable", "rotate_refresh_token", "revoke")},
        ("tests/test_session_credentials.py",),
        # InvalidToken's text is never shown: every refusal answers the same.
        unmutated=(r"raise InvalidToken\(",)),
    Target("ratelimit-keys", {"guestguard.ratelimit.service": (
        "_digest", "by_ip", "_email_in_body", "by_ip_and_email", "by_token", "by_caller", "api_keys_of")},
        ("tests/test_ratelimit_key_functions.py",)),
    Target("token-lookups", {
        "guestguard.guard.access": ("look_up", "found_in"),
        "guestguard.activity.stream": ("redeem_ticket", "still_allowed"),
        "guestguard.workspaces.services": ("api_key_for", "invitation_for_token"),
        "guestguard.accounts.services": ("_consume_user_token", "check_reset_token"),
    }, ("tests/test_token_lookups.py",),
        # PostgreSQL's alone, and the mutants run on SQLite: the credential's
        # workspace opened to row-level security, and the use the look-up's
        # statement logs (``access._found``, which picks that statement, is
        # left out for the same reason). test_token_lookups.py and
        # test_row_security.py check both in the PostgreSQL pass.
        unmutated=(r"rls\.open_credential\(", r"return _found\(db, token_hash, use\)")),
    Target("csrf", {"guestguard.web": ("csrf_applies",), "guestguard.csrf": (
        "LoginBoundCSRF.__init__", "LoginBoundCSRF._of_login", "LoginBoundCSRF.new_csrf_token",
        "LoginBoundCSRF.get_csrf_token", "LoginBoundCSRF.check_csrf_token")},
        ("tests/test_csrf.py", "tests/test_web.py")),
    Target("security", {"guestguard.security": (
        "SecurityPolicy.identity", "SecurityPolicy._identify", "SecurityPolicy.authenticated_userid",
        "SecurityPolicy.effective_principals", "SecurityPolicy.permits", "SecurityPolicy.remember",
        "SecurityPolicy.forget", "workspace_of", "come_back_to", "forbidden")},
        ("tests/test_policy_decisions.py",)),
    Target("sms-segments", {"guestguard.sms_segments": (
        "encoding_of", "unit_sizes", "pack", "estimate", "sms_body", "MessageTooLong.__init__", "too_long",
        "check")},
        ("tests/test_sms_segments.py",)),
    Target("inputs", {"guestguard.inputs": (
        "text_problem", "shown", "refused", "check_pairs", "_walk", "check_json", "too_deep", "check_json_body",
        "guard_input")},
        ("tests/test_input_guard.py",)),
    # _insert_unless_taken is left out: what it adds to a plain insert is
    # PostgreSQL's wait for a concurrent request with the key, which
    # test_idempotency.py drives on PostgreSQL and the mutants (on SQLite)
    # cannot.
    Target("idempotency", {"guestguard.idempotency": (
        "carries_key", "presented_key", "_digest", "_raw", "caller_of", "fingerprint_of", "_body_parts",
        "KeyInUse.__init__",
        "claim", "keep", "replay", "kept_answer", "idempotency_deriver", "gone_deriver")},
        ("tests/test_idempotency_rules.py",)),
    Target("sns", {"guestguard_ses.sns": (
        "canonical_string", "check_amazon_url", "check_certificate_url", "parse_timestamp", "check_fresh",
        "check_shape", "check_signature", "verify", "CertificateCache.__init__", "CertificateCache.__call__")},
        ("plugins/guestguard-ses/tests/test_sns.py",), source="plugins/guestguard-ses/src",
        helpers=("plugins/guestguard-ses/src/guestguard_ses/testing.py",)),
)

TARGETS_BY_NAME = {target.name: target for target in TARGETS}


def mutant_glob(module: str, function: str) -> str:
    """mutmut's name for the mutants of one function (``xǁClassǁmethod``
    for a method)."""
    if "." in function:
        cls, method = function.split(".")
        return f"{module}.x\u01c1{cls}\u01c1{method}__mutmut_*"
    return f"{module}.x_{function}__mutmut_*"


def function_of(mutant: str) -> tuple[str, str]:
    """(module, function) of a mutant's name."""
    base = re.sub(r"__mutmut_\d+$", "", mutant)
    if "\u01c1" in base:
        head, cls, method = base.split("\u01c1")
        return head.removesuffix(".x"), f"{cls}.{method}"
    module, _, name = base.rpartition(".x_")
    return module, name


def module_path(module: str) -> Path:
    return Path("src", *module.split(".")).with_suffix(".py")


def mutmut_config(target: Target) -> str:
    files = "\n".join(f"    {module_path(module)}" for module in target.functions)
    tests = "\n".join(f"    {test}" for test in target.tests)
    unmutated = "\n".join(f"    {pattern}" for pattern in target.unmutated)
    # A plugin's tests (with their conftest) are copied beside the core's.
    plugin_tests = sorted({str(Path(test.split("::")[0]).parent) for test in target.tests
                           if test.startswith("plugins/")})
    copied = "".join(f"    {path}\n" for path in plugin_tests)
    return (f"\n[mutmut]\nsource_paths = src\nonly_mutate =\n{files}\n"
            "also_copy =\n    conftest.py\n    migrations\n    templates\n    development.ini\n    production.ini\n"
            f"{copied}"
            f"pytest_add_cli_args_test_selection =\n{tests}\n"
            + (f"do_not_mutate_patterns =\n{unmutated}\n" if target.unmutated else "")
            + "use_git_change_detection = false\n")


def prepare(target: Target) -> Path:
    """A fresh scratch directory: the project by symlink, its own setup.cfg."""
    workdir = WORK / target.name
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    for name in LINKED:
        (workdir / name).symlink_to(ROOT / name)
    (workdir / "src").symlink_to(ROOT / target.source)
    (workdir / "setup.cfg").write_text((ROOT / "setup.cfg").read_text() + mutmut_config(target))
    return workdir


def mutmut(*args: str, cwd: Path, log=None) -> subprocess.CompletedProcess:
    binary = Path(sys.executable).with_name("mutmut")
    # On SQLite and in-memory backends whatever the environment says: the
    # mutants run side by side, and would share (and empty) one PostgreSQL
    # database or Redis db.
    env = {name: value for name, value in os.environ.items() if name not in SHARED_BACKENDS}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run([str(binary), *args], cwd=cwd, env=env, text=True, check=False,
                          stdout=log or subprocess.PIPE, stderr=subprocess.STDOUT)


@dataclass
class Mutant:
    name: str
    status: str  # killed, survived, no tests
    change: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())

    @property
    def function(self) -> str:
        module, function = function_of(self.name)
        return f"{module}.{function}"

    def describe(self) -> str:
        removed, added = self.change
        return "\n".join([f"[{self.function}]", *(f"- {line}" for line in removed),
                          *(f"+ {line}" for line in added)])


def results(target: Target, workdir: Path) -> dict[str, list[Mutant]]:
    """The mutants of the target's functions, by module, with their fate."""
    wanted = {module: set(functions) for module, functions in target.functions.items()}
    found: dict[str, list[Mutant]] = {module: [] for module in target.functions}
    for module in target.functions:
        meta = workdir / "mutants" / module_path(module).with_suffix(".py.meta")
        codes = json.loads(meta.read_text())["exit_code_by_key"] if meta.exists() else {}
        for name, code in codes.items():
            owner, function = function_of(name)
            if owner != module or function not in wanted[module]:
                continue
            status = "killed" if code in KILLED else "no tests" if code in NO_TESTS else "survived"
            found[module].append(Mutant(name, status))
    for mutants in found.values():
        for mutant in mutants:
            if mutant.status != "killed":
                mutant.change = change_of(mutant.name, workdir)
    return found


def change_of(name: str, workdir: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The lines a mutant removes and adds, as ``mutmut show`` prints them."""
    diff = mutmut("show", name, cwd=workdir).stdout.splitlines()
    removed = tuple(line[1:].strip() for line in diff if line.startswith("-") and not line.startswith("---"))
    added = tuple(line[1:].strip() for line in diff if line.startswith("+") and not line.startswith("+++"))
    return removed, added


@dataclass
class Equivalent:
    function: str
    removed: tuple[str, ...]
    added: tuple[str, ...]
    reason: str
    used: bool = field(default=False)


def read_equivalents(path: Path = EQUIVALENTS) -> list[Equivalent]:
    """Blocks of ``[module.function]``, ``- old line``, ``+ new line`` and
    ``reason: …``, separated by blank lines; ``#`` starts a comment."""
    entries: list[Equivalent] = []
    if not path.exists():
        return entries
    block: list[str] = []
    for line in [*path.read_text().splitlines(), ""]:
        if line.startswith("#"):
            continue
        if line.strip():
            block.append(line)
            continue
        if not block:
            continue
        if not (block[0].startswith("[") and block[0].endswith("]")):
            raise SystemExit(f"{path}: a block must start with [module.function], not {block[0]!r}")
        removed = tuple(item[2:].strip() for item in block if item.startswith("- "))
        added = tuple(item[2:].strip() for item in block if item.startswith("+ "))
        reason = " ".join(item.split(":", 1)[1].strip() for item in block if item.startswith("reason:"))
        if not reason:
            raise SystemExit(f"{path}: {block[0]} has no reason")
        entries.append(Equivalent(block[0][1:-1], removed, added, reason))
        block = []
    return entries


def judged_equivalent(mutant: Mutant, equivalents: list[Equivalent]) -> Equivalent | None:
    for entry in equivalents:
        if (entry.function, entry.removed, entry.added) == (mutant.function, *mutant.change):
            entry.used = True
            return entry
    return None


def deciding_files(target: Target) -> list[Path]:
    """The files whose content decides a target's result, relative to the
    project: its mutated modules, its test files with every conftest.py
    above them, its helpers and ``DECIDING``."""
    files = {Path(target.source, *module.split(".")).with_suffix(".py") for module in target.functions}
    for test in target.tests:
        path = Path(test.split("::")[0])
        files.add(path)
        files.update(parent / "conftest.py" for parent in path.parents
                     if (ROOT / parent / "conftest.py").exists())
    files.update(Path(name) for name in (*DECIDING, *target.helpers))
    return sorted(files)


def digest(target: Target) -> str:
    """A digest of the target's definition and of its deciding files."""
    hasher = hashlib.sha256(repr(target).encode())
    for path in deciding_files(target):
        content = (ROOT / path).read_bytes()
        hasher.update(f"\0{path}\0{len(content)}\0".encode())
        hasher.update(content)
    return hasher.hexdigest()


def read_record(path: Path = RECORD) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def recorded(found: dict[str, list[Mutant]], key: str) -> dict:
    """A target's results as kept in the record: per module, the killed
    mutants counted and the others with their change."""
    return {"digest": key, "modules": {
        module: {"killed": sum(mutant.status == "killed" for mutant in mutants),
                 "others": [{"name": mutant.name, "status": mutant.status, "removed": list(mutant.change[0]),
                             "added": list(mutant.change[1])}
                            for mutant in mutants if mutant.status != "killed"]}
        for module, mutants in found.items()}}


def from_record(entry: dict) -> dict[str, list[Mutant]]:
    return {module: [*(Mutant(f"{module}.killed_{index}", "killed") for index in range(kept["killed"])),
                     *(Mutant(other["name"], other["status"], (tuple(other["removed"]), tuple(other["added"])))
                       for other in kept["others"])]
            for module, kept in entry["modules"].items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", help="targets to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    parser.add_argument("--max-children", type=int, default=int(os.environ.get("MUTATION_JOBS", "2")))
    parser.add_argument("--threshold", type=float, default=THRESHOLD)
    parser.add_argument("--report", action="store_true",
                        help="report on the last run's results again (after editing the equivalents) without running")
    parser.add_argument("--reuse", action="store_true",
                        help="report a target from its record when nothing that decides its result has changed")
    parser.add_argument("--tests", action="append", default=[], metavar="TARGET=TEST[,TEST…]",
                        help="run a target against other tests (e.g. to measure an older suite)")
    args = parser.parse_args(argv)
    by_name = dict(TARGETS_BY_NAME)
    for override in args.tests:
        name, _, tests = override.partition("=")
        if name not in by_name:
            parser.error(f"--tests: unknown target {name!r}")
        by_name[name] = replace(by_name[name], tests=tuple(tests.split(",")))
    if args.list:
        for target in TARGETS:
            print(f"{target.name}: {', '.join(target.functions)}  <- {' '.join(target.tests)}")
        return 0
    unknown = [name for name in args.targets if name not in by_name]
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(by_name)}")
    chosen = [by_name[name] for name in args.targets or by_name]
    equivalents = read_equivalents()
    record = read_record()
    started = time.monotonic()
    rows, survivors, failures = [], [], []
    for target in chosen:
        for module, mutants in target_results(target, args, record, failures).items():
            row, alive = score(module, mutants, equivalents)
            rows.append(row)
            survivors += alive
            if not mutants:
                failures.append(f"{module}: no mutants were tried")
            elif row[-1] < args.threshold:
                failures.append(f"{module}: {row[-1]:.1f}% is below {args.threshold:.0f}%")
    report = render(rows, survivors, time.monotonic() - started)
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "report.md").write_text(report)
    print(report)
    modules = {module for target in chosen for module in target.functions}
    for entry in equivalents:
        if not entry.used and any(entry.function.startswith(module + ".") for module in modules):
            print(f"note: no surviving mutant matches the equivalent entry [{entry.function}] "
                  f"{' / '.join(entry.removed)} -> {' / '.join(entry.added)}: remove it?")
    if failures:
        print("\n".join(["FAILED:", *failures]))
        return 1
    return 0


def target_results(target: Target, args: argparse.Namespace, record: dict,
                   failures: list[str]) -> dict[str, list[Mutant]]:
    """The target's mutants: from the record (``--reuse``, nothing that
    decides them changed), the last run (``--report``), or a run now,
    which a target with its own tests then records."""
    key = digest(target)
    if args.reuse and record.get(target.name, {}).get("digest") == key:
        print(f"== {target.name}: unchanged since its recorded run, reported from {RECORD.name}", flush=True)
        return from_record(record[target.name])
    if args.report:
        return results(target, WORK / target.name)
    failed_before = len(failures)
    found = results(target, run_target(target, args.max_children, failures))
    # The scratch directory reads the project as it is: a file edited
    # during the run would record results under a digest they do not match.
    if len(failures) == failed_before and target == TARGETS_BY_NAME[target.name] and digest(target) == key:
        record[target.name] = recorded(found, key)
        RECORD.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return found


def run_target(target: Target, max_children: int, failures: list[str]) -> Path:
    """Run mutmut over one target in a fresh scratch directory; returns it."""
    workdir = prepare(target)
    globs = [mutant_glob(module, function) for module, functions in target.functions.items()
             for function in functions]
    print(f"== {target.name}: mutating {', '.join(target.functions)}", flush=True)
    started = time.monotonic()
    with (workdir / "mutmut.log").open("w") as log:
        run = mutmut("run", "--max-children", str(max_children), *globs, cwd=workdir, log=log)
    if run.returncode != 0:
        failures.append(f"{target.name}: mutmut failed (exit {run.returncode}): {workdir / 'mutmut.log'}")
    print(f"   {time.monotonic() - started:.0f} s", flush=True)
    return workdir


def score(module: str, mutants: list[Mutant], equivalents: list[Equivalent]):
    """The module's report row (module, tried, killed, survived, equivalent,
    score) and its survivors not judged equivalent."""
    killed = sum(mutant.status == "killed" for mutant in mutants)
    equivalent = [mutant for mutant in mutants if mutant.status != "killed"
                  and judged_equivalent(mutant, equivalents)]
    alive = [mutant for mutant in mutants if mutant.status != "killed" and mutant not in equivalent]
    counted = len(mutants) - len(equivalent)
    percent = 100.0 * killed / counted if counted else 100.0
    return (module, len(mutants), killed, len(alive), len(equivalent), percent), alive


def render(rows, survivors: list[Mutant], seconds: float) -> str:
    lines = ["| module | tried | killed | survived | equivalent | score |", "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {module} | {tried} | {killed} | {alive} | {equivalent} | {score:.1f}% |"
              for module, tried, killed, alive, equivalent, score in rows]
    tried = sum(row[1] for row in rows)
    killed = sum(row[2] for row in rows)
    equivalent = sum(row[4] for row in rows)
    total = 100.0 * killed / (tried - equivalent) if tried > equivalent else 100.0
    lines.append(f"| **all** | {tried} | {killed} | {sum(row[3] for row in rows)} | {equivalent} | {total:.1f}% |")
    lines.append(f"\n{len(rows)} modules in {seconds:.0f} s.")
    if survivors:
        lines.append("\nSurviving mutants (not listed as equivalent):\n")
        for mutant in survivors:
            lines += ["```", f"# {mutant.name} ({mutant.status})", mutant.describe(), "```"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
