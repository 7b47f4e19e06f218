"""constraints.txt, which `make install` installs from, names a release of
every dependency the project and its plugins declare, within what they allow:
a dependency added to a setup.cfg without `make lock` fails here, not on a
fresh machine that installs whatever is newest."""
from __future__ import annotations

import configparser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.one_pass("sqlite")

ROOT = Path(__file__).resolve().parents[1]


def declared(setup_cfg: Path) -> list[Requirement]:
    parser = configparser.ConfigParser()
    parser.read(setup_cfg)
    lines = parser.get("options", "install_requires", fallback="").splitlines()
    if parser.has_section("options.extras_require"):
        for extra in parser["options.extras_require"].values():
            lines += extra.splitlines()
    return [Requirement(line.strip()) for line in lines if line.strip() and not line.strip().startswith("#")]


def pinned(text: str) -> dict[str, str]:
    pins = {}
    for line in text.splitlines():
        pin = line.split("#", 1)[0].strip()
        if pin:
            name, _, version = pin.partition("==")
            pins[canonicalize_name(name)] = version
    return pins


def problems(requirements: list[Requirement], pins: dict[str, str]) -> list[str]:
    found = []
    for requirement in requirements:
        version = pins.get(canonicalize_name(requirement.name))
        if version is None:
            found.append(f"{requirement.name} is not in constraints.txt")
        elif not requirement.specifier.contains(version, prereleases=True):
            found.append(f"{requirement.name}=={version} is outside {requirement.specifier}")
    return found


def every_setup_cfg() -> list[Path]:
    return [ROOT / "setup.cfg", *sorted(ROOT.glob("plugins/*/setup.cfg"))]


def test_every_declared_dependency_is_pinned_within_its_range():
    pins = pinned((ROOT / "constraints.txt").read_text())
    plugin_names = {canonicalize_name(path.parent.name) for path in every_setup_cfg()[1:]} | {"guestguard"}
    requirements = [r for path in every_setup_cfg() for r in declared(path)
                    if canonicalize_name(r.name) not in plugin_names]
    assert len(requirements) > 40
    assert problems(requirements, pins) == []


def test_the_check_finds_a_missing_pin_and_one_out_of_range():
    requirements = [Requirement("sentry-sdk>=2.20,<3"), Requirement("Pillow>=10.3")]
    assert problems(requirements, pinned("sentry_sdk==3.0.0\n")) == [
        "sentry-sdk==3.0.0 is outside <3,>=2.20", "Pillow is not in constraints.txt"]
