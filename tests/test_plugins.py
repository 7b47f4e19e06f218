"""The plugin system: defaults and entry points through one path, broken
plugins skipped (or fatal under plugins.strict), hooks documented and tested."""
import ast
import inspect
import logging
import re

import pytest

from guestguard import hookspecs, make_config
from guestguard.plugins import PluginLoadError, Setting, as_int, build_plugin_manager, describe_plugins, hookimpl
from guestguard.settings import SettingsError
from guestguard.testing import REPO_ROOT, guestguard_command


@pytest.fixture
def broken_distribution(tmp_path, monkeypatch):
    """An installed distribution whose ``guestguard`` entry point raises on import."""
    dist_info = tmp_path / "guestguard_broken-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: guestguard-broken\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text("[guestguard]\nbroken = guestguard_broken_plugin\n")
    (tmp_path / "guestguard_broken_plugin.py").write_text("raise ImportError('missing dependency xyz')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "broken"


def test_defaults_are_registered_through_the_same_path():
    pm = build_plugin_manager(strict=True, load_entry_points=False)
    names = [info.name for info in describe_plugins(pm)]
    assert "guestguard.notifications.console" in names


def test_installed_plugin_distributions_are_loaded_from_entry_points():
    pm = build_plugin_manager(strict=True)
    infos = {info.name: info for info in describe_plugins(pm)}
    assert infos["smtp"].distribution == "guestguard-smtp"
    assert "register_notification_providers" in infos["smtp"].hooks


def test_a_broken_plugin_is_logged_and_skipped(broken_distribution, caplog):
    with caplog.at_level(logging.ERROR, logger="guestguard.plugins"):
        pm = build_plugin_manager(strict=False)
    assert broken_distribution not in {info.name for info in describe_plugins(pm)}
    assert "smtp" in {info.name for info in describe_plugins(pm)}, "other plugins still load"
    assert any("broken" in r.getMessage() and "missing dependency xyz" in r.getMessage()
               for r in caplog.records)


def test_a_broken_plugin_stops_startup_when_strict(broken_distribution, base_settings):
    with pytest.raises(PluginLoadError, match="broken.*missing dependency xyz"):
        make_config({**base_settings, "plugins.strict": "true"}, environ={})


def test_the_app_starts_with_a_broken_plugin_when_not_strict(broken_distribution, make_app):
    make_app().get("/health")


def test_disabled_plugins_are_not_registered():
    pm = build_plugin_manager(strict=True, disabled=["smtp"])
    assert "smtp" not in {info.name for info in describe_plugins(pm)}


class SettingsPlugin:
    @hookimpl
    def register_settings(self):
        return [Setting("sample.limit", as_int(1, 10), 3, "A sample limit.")]


def test_plugin_settings_are_typed_and_overridable(base_settings):
    config = make_config({**base_settings, "sample.limit": "7"}, environ={"GG_SAMPLE_LIMIT": "9"},
                         extra_plugins=[("sample", SettingsPlugin())])
    assert config.registry.settings["sample.limit"] == 9


def test_plugin_settings_are_validated(base_settings):
    with pytest.raises(SettingsError, match="'sample.limit'"):
        make_config({**base_settings, "sample.limit": "70"}, environ={},
                    extra_plugins=[("sample", SettingsPlugin())])
    with pytest.raises(SettingsError, match="'sample.limt'"):
        make_config({**base_settings, "sample.limt": "7"}, environ={},
                    extra_plugins=[("sample", SettingsPlugin())])


def test_plugins_command_lists_plugins_versions_and_hooks():
    result = guestguard_command(
        "plugins", str(REPO_ROOT / "development.ini"), timeout=60,
        env={"GG_DB_URL": "sqlite:////tmp/gg-plugins-cmd.sqlite", "GG_HUEY_URL": "memory://"})
    assert result.returncode == 0, result.stderr
    assert "guestguard.notifications.console  (guestguard 0.1.0)" in result.stdout
    assert re.search(r"^smtp  \(guestguard-smtp \d", result.stdout, re.MULTILINE)
    assert "register_notification_providers" in result.stdout
    assert "email -> console" in result.stdout


# --- meta-tests --------------------------------------------------------------

HOOK_NAMES = sorted(name for name in dir(hookspecs)
                    if not name.startswith("_") and callable(getattr(hookspecs, name))
                    and hasattr(getattr(hookspecs, name), "guestguard_spec"))


def test_hookspecs_are_found():
    assert {"register_settings", "register_notification_providers", "configure",
            "domain_event"} <= set(HOOK_NAMES)


def documented_hooks() -> dict[str, list[str]]:
    """Each hook heading of docs/plugins.md (``### `name(a, b)` ``) as name -> parameters."""
    docs = (REPO_ROOT / "docs" / "plugins.md").read_text()
    section = docs.split("\n## Hooks\n", 1)[1].split("\n## ", 1)[0]
    headings = re.findall(r"^###\s+(.*)$", section, re.MULTILINE)
    documented = {}
    for heading in headings:
        match = re.fullmatch(r"`(\w+)\(((?:\w+(?:, \w+)*)?)\)`", heading.strip())
        assert match, f"docs/plugins.md: hook heading {heading!r} is not of the form `name(a, b)`"
        name, params = match.groups()
        assert name not in documented, f"docs/plugins.md documents {name} twice"
        documented[name] = params.split(", ") if params else []
    return documented


def test_every_documented_hook_exists():
    assert set(documented_hooks()) == set(HOOK_NAMES)


@pytest.mark.parametrize("hook", HOOK_NAMES)
def test_every_hook_is_documented(hook):
    documented = documented_hooks()
    assert hook in documented, f"docs/plugins.md has no section for {hook}"
    expected = list(inspect.signature(getattr(hookspecs, hook)).parameters)
    assert documented[hook] == expected, (
        f"docs/plugins.md documents {hook}({', '.join(documented[hook])}), "
        f"the hookspec is {hook}({', '.join(expected)})")


@pytest.mark.parametrize("hook", HOOK_NAMES)
def test_every_hook_is_exercised_by_a_test(hook):
    """Some test module implements the hook with @hookimpl."""
    test_files = list((REPO_ROOT / "tests").rglob("test_*.py")) + list(
        (REPO_ROOT / "plugins").glob("*/tests/test_*.py"))
    for path in test_files:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name == hook and any(
                    "hookimpl" in ast.unparse(d) for d in node.decorator_list):
                return
    pytest.fail(f"no test implements the {hook} hook")
