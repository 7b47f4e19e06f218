"""The mutation run's record (tools/mutation.py): a target is reported from
it only while nothing that decides the target's result has changed, and a
reported target is scored exactly as a fresh run of the same mutants."""
from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import sys
from pathlib import Path

import pytest


def load_tool():
    """tools/mutation.py, which is not installed, loaded by its path."""
    path = Path(__file__).resolve().parents[1] / "tools" / "mutation.py"
    spec = importlib.util.spec_from_file_location("tools.mutation", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(sys.modules[spec.name])
    return sys.modules[spec.name]


mutation = load_tool()

pytestmark = pytest.mark.one_pass("sqlite")

INPUTS = mutation.TARGETS_BY_NAME["inputs"]
SNS = mutation.TARGETS_BY_NAME["sns"]


def test_a_targets_deciding_files_are_its_modules_tests_conftests_and_the_shared_ones():
    assert set(map(str, mutation.deciding_files(INPUTS))) == {
        "src/guestguard/inputs.py", "tests/test_input_guard.py", "conftest.py", *mutation.DECIDING}
    assert set(map(str, mutation.deciding_files(SNS))) == {
        "plugins/guestguard-ses/src/guestguard_ses/sns.py", "plugins/guestguard-ses/tests/test_sns.py",
        "plugins/guestguard-ses/tests/conftest.py", "conftest.py",
        "plugins/guestguard-ses/src/guestguard_ses/testing.py", *mutation.DECIDING}


@pytest.fixture
def copied_project(tmp_path, monkeypatch):
    """The files of every target copied to a project of their own."""
    for target in mutation.TARGETS:
        for path in mutation.deciding_files(target):
            (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(mutation.ROOT / path, tmp_path / path)
    (tmp_path / "src/guestguard/unrelated.py").write_text("x = 1\n")
    monkeypatch.setattr(mutation, "ROOT", tmp_path)
    return tmp_path


def test_the_digest_moves_with_a_deciding_file_and_only_with_one(copied_project: Path):
    before = {target.name: mutation.digest(target) for target in mutation.TARGETS}
    (copied_project / "src/guestguard/unrelated.py").write_text("x = 2\n")
    assert {target.name: mutation.digest(target) for target in mutation.TARGETS} == before

    with (copied_project / "tests/test_input_guard.py").open("a") as test:
        test.write("\n# a test weakened or strengthened\n")
    after = {target.name: mutation.digest(target) for target in mutation.TARGETS}
    assert after["inputs"] != before["inputs"]
    assert {name for name in after if after[name] != before[name]} == {"inputs"}

    (copied_project / "constraints.txt").write_text("a-new-pin==1\n")
    assert all(mutation.digest(target) != after[target.name] for target in mutation.TARGETS)


def test_the_definition_of_a_target_is_part_of_its_digest():
    assert mutation.digest(dataclasses.replace(INPUTS, tests=())) != mutation.digest(INPUTS)
    assert mutation.digest(dataclasses.replace(SNS, helpers=())) != mutation.digest(SNS)


def test_a_recorded_target_scores_as_the_run_it_records():
    survivor = mutation.Mutant("guestguard.inputs.x_shown__mutmut_3", "survived",
                               (("return len(text) > limit",), ("return len(text) >= limit",)))
    untested = mutation.Mutant("guestguard.inputs.x_refused__mutmut_1", "no tests", (("a",), ("b",)))
    found = {"guestguard.inputs": [mutation.Mutant(f"guestguard.inputs.x_shown__mutmut_{n}", "killed")
                                   for n in range(10)] + [survivor, untested]}
    equivalent = mutation.Equivalent("guestguard.inputs.shown", *survivor.change, "a reason")
    entry = mutation.recorded(found, "abc")
    assert entry["digest"] == "abc"
    again = mutation.from_record(entry)
    assert mutation.score("guestguard.inputs", again["guestguard.inputs"], [equivalent]) == \
        mutation.score("guestguard.inputs", found["guestguard.inputs"], [equivalent])
    row, alive = mutation.score("guestguard.inputs", again["guestguard.inputs"], [])
    assert row == ("guestguard.inputs", 12, 10, 2, 0, pytest.approx(100 * 10 / 12))
    assert [mutant.describe() for mutant in alive] == [survivor.describe(), untested.describe()]
