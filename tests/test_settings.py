import pytest

from guestguard import make_config
from guestguard.settings import CORE_SETTINGS, SettingsError, SettingsReader, env_var_for


def read(raw, environ=None):
    reader = SettingsReader()
    reader.declare(CORE_SETTINGS)
    return reader.read(raw, environ or {})


MINIMAL = {"db.url": "sqlite:////tmp/x.sqlite", "huey.url": "memory://"}


def test_defaults_are_typed():
    settings = read(MINIMAL)
    assert settings["db.pool_size"] == 5
    assert settings["huey.immediate"] is False
    assert settings["app.env"] == "development"
    assert settings["plugins.disabled"] == ()


def test_environment_overrides_the_ini_value():
    settings = read({**MINIMAL, "db.pool_size": "5"}, {"GG_DB_POOL_SIZE": "12", "GG_HUEY_IMMEDIATE": "yes"})
    assert settings["db.pool_size"] == 12
    assert settings["huey.immediate"] is True


@pytest.mark.parametrize("raw, threshold", [(None, 5), ("0", 0), ("never", None), ("NEVER", None)])
def test_prepared_statements_can_be_turned_off_for_pgbouncer(raw, threshold):
    settings = read({**MINIMAL, **({} if raw is None else {"db.prepare_threshold": raw})})
    assert settings["db.prepare_threshold"] == threshold


def test_env_var_names_follow_the_setting_name():
    assert env_var_for("notifications.email.provider") == "GG_NOTIFICATIONS_EMAIL_PROVIDER"


@pytest.mark.parametrize("raw, named", [
    ({**MINIMAL, "db.pool_size": "lots"}, "'db.pool_size'"),
    ({**MINIMAL, "db.pool_size": "0"}, "'db.pool_size'"),
    ({**MINIMAL, "db.url": "mysql://localhost/x"}, "'db.url'"),
    ({**MINIMAL, "db.url": "not a url"}, "'db.url'"),
    ({**MINIMAL, "huey.url": "amqp://localhost"}, "'huey.url'"),
    ({**MINIMAL, "app.env": "staging"}, "'app.env'"),
    ({**MINIMAL, "huey.immediate": "perhaps"}, "'huey.immediate'"),
    ({**MINIMAL, "db.pool_sise": "3"}, "'db.pool_sise'"),
    ({"huey.url": "memory://"}, "'db.url'"),
    ({**MINIMAL, "db.url": "postgresql+psycopg://u@h:notaport/db"}, "'db.url'"),
    ({**MINIMAL, "db.url": "postgresql+nosuchdriver://u@h/db"}, "'db.url'"),
    ({**MINIMAL, "db.url": "sqlite:///"}, "'db.url'"),
    ({**MINIMAL, "db.url": "sqlite:///:memory:"}, "'db.url'"),
    ({**MINIMAL, "huey.url": "sqlite://"}, "'huey.url'"),
    ({**MINIMAL, "huey.url": "redis://localhost:abc/0"}, "'huey.url'"),
    ({**MINIMAL, "redis.url": "redis://h:xx/0"}, "'redis.url'"),
    ({**MINIMAL, "app.base_url": "https:///x"}, "'app.base_url'"),
    ({**MINIMAL, "notifications.email.sender": "GG <a@b.example>\r\nBcc: x@y.example"},
     "'notifications.email.sender'"),
    ({**MINIMAL, "notifications.email.sender": "not an address"}, "'notifications.email.sender'"),
    ({**MINIMAL, "metrics.token": "short"}, "'metrics.token' (from the ini file) is invalid: must be at least 24"),
    ({**MINIMAL, "metrics.token": "a token with spaces, long enough"}, "printable characters without spaces"),
    ({**MINIMAL, "metrics.allowed_networks": "10.0.0.0/8, intranet"},
     "'metrics.allowed_networks' (from the ini file) is invalid: 'intranet' is not an IP address"),
    ({**MINIMAL, "metrics.worker_listen": "9465"}, "'metrics.worker_listen' (from the ini file) is invalid: expected"),
    ({**MINIMAL, "metrics.worker_listen": "127.0.0.1:99999"}, "'metrics.worker_listen'"),
    ({**MINIMAL, "sentry.dsn": "sentry.example.com/1"}, "'sentry.dsn' (from the ini file) is invalid: expected a URL"),
    ({**MINIMAL, "sentry.sample_rate": "1.5"}, "is invalid: must be between 0 and 1, got 1.5"),
    ({**MINIMAL, "sentry.sample_rate": "often"}, "'sentry.sample_rate' (from the ini file) is invalid: expected"),
    ({**MINIMAL, "db.prepare_threshold": "-1"}, "'db.prepare_threshold' (from the ini file) is invalid: must be at "),
    ({**MINIMAL, "db.prepare_threshold": "sometimes"}, "expected a whole number, got 'sometimes'"),
])
def test_bad_settings_stop_startup_naming_the_setting(raw, named):
    with pytest.raises(SettingsError) as info:
        read(raw)
    assert named in str(info.value)


def test_a_bad_environment_value_names_the_variable():
    with pytest.raises(SettingsError, match="GG_DB_POOL_SIZE"):
        read(MINIMAL, {"GG_DB_POOL_SIZE": "many"})


def test_production_refuses_to_start_without_its_secret():
    with pytest.raises(SettingsError) as info:
        read({**MINIMAL, "app.env": "production"})
    assert "GG_APP_SECRET" in str(info.value)


PRODUCTION = {**MINIMAL, "app.env": "production", "app.base_url": "https://gg.example"}
PRODUCTION_QUEUE = {"huey.url": "redis://127.0.0.1:6379/1", "guard.stream.url": "redis://127.0.0.1:6379/3"}


def test_production_refuses_a_short_secret():
    with pytest.raises(SettingsError, match="at least 32"):
        read({**PRODUCTION, **PRODUCTION_QUEUE}, {"GG_APP_SECRET": "short"})


def test_production_refuses_a_queue_no_worker_can_read():
    with pytest.raises(SettingsError, match="huey.url"):
        read(PRODUCTION, {"GG_APP_SECRET": "s" * 40})  # MINIMAL uses memory://


def test_production_refuses_an_in_process_live_feed_with_separate_workers():
    with pytest.raises(SettingsError, match="guard.stream.url"):
        read({**PRODUCTION, "huey.url": "redis://127.0.0.1:6379/1"}, {"GG_APP_SECRET": "s" * 40})


def test_a_postgresql_socket_url_is_accepted():
    assert read({**MINIMAL, "db.url": "postgresql+psycopg:///gg?host=/var/run/postgresql"})


def test_a_missing_templates_directory_stops_startup(base_settings, tmp_path):
    with pytest.raises(SettingsError, match="app.templates_dir"):
        make_config({**base_settings, "app.templates_dir": str(tmp_path / "nowhere")}, environ={})


def test_an_ini_copied_elsewhere_finds_the_templates(tmp_path):
    from pyramid.paster import get_appsettings

    from guestguard import read_settings
    from guestguard.testing import REPO_ROOT

    copy = tmp_path / "my.ini"
    copy.write_text((REPO_ROOT / "development.ini").read_text())
    settings, _pm, _reader = read_settings(get_appsettings(str(copy), name="main"), environ={})
    assert settings["app.templates_dir"] == str(REPO_ROOT / "templates")
    assert settings["db.url"] == f"sqlite:///{tmp_path}/var/guestguard.sqlite"


def test_production_requires_its_public_address():
    with pytest.raises(SettingsError, match="GG_APP_BASE_URL"):
        read({**MINIMAL, "app.env": "production"}, {"GG_APP_SECRET": "s" * 40})


def test_production_starts_with_its_secret_from_the_environment():
    settings = read({**PRODUCTION, **PRODUCTION_QUEUE}, {"GG_APP_SECRET": "s" * 40})
    assert settings["app.secret"] == "s" * 40


def test_a_blank_environment_variable_does_not_hide_the_ini_value():
    assert read({**MINIMAL, "db.pool_size": "9"}, {"GG_DB_POOL_SIZE": ""})["db.pool_size"] == 9


def test_a_misspelt_environment_variable_is_reported(caplog):
    read(MINIMAL, {"GG_DB_POOL_SIZ": "3", "GG_TEST_DATABASE_URL": "x", "GG_BENCH_MIXED": "0"})
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("GG_DB_POOL_SIZ " in w for w in warnings)
    assert not any("GG_TEST_DATABASE_URL" in w or "GG_BENCH_MIXED" in w for w in warnings), \
        "the tests' and benchmarks' own variables are not settings"


def test_public_view_masks_secrets():
    reader = SettingsReader()
    reader.declare(CORE_SETTINGS)
    settings = reader.read(MINIMAL, {"GG_APP_SECRET": "x" * 40})
    view = reader.public_view(settings)
    assert view["app.secret"] == "********"
    assert "x" * 40 not in repr(view)


def test_unknown_provider_stops_startup_naming_the_setting(base_settings):
    with pytest.raises(SettingsError) as info:
        make_config({**base_settings, "notifications.email.provider": "pigeon"}, environ={})
    assert "notifications.email.provider" in str(info.value)
    assert "pigeon" in str(info.value)


def test_keys_of_other_libraries_pass_through(base_settings):
    config = make_config({**base_settings, "jinja2.trim_blocks": "true"}, environ={})
    assert config.registry.settings["jinja2.trim_blocks"] == "true"


def test_every_setting_of_the_core_and_installed_plugins_is_documented():
    from guestguard.plugins import build_plugin_manager, collect
    from guestguard.testing import REPO_ROOT

    pm = build_plugin_manager(strict=True)
    declared = list(CORE_SETTINGS) + collect(pm.hook.register_settings())
    docs = (REPO_ROOT / "docs" / "configuration.md").read_text()
    missing = [s.name for s in declared if f"`{s.name}`" not in docs or s.env_var not in docs]
    assert len(declared) > len(CORE_SETTINGS)
    assert missing == []


@pytest.mark.parametrize("channel", ["email", "sms"])
def test_production_refuses_the_console_provider_which_sends_nothing(channel):
    from guestguard.notifications import select_providers
    from guestguard.notifications.console import ConsoleProvider

    settings = {"app.env": "production", f"notifications.{channel}.provider": "console"}
    with pytest.raises(SettingsError, match=f"'notifications.{channel}.provider': the console provider"):
        select_providers(settings, [ConsoleProvider(10)])


def test_a_channel_with_no_provider_is_said_at_startup(caplog):
    from guestguard.notifications import select_providers
    from guestguard.notifications.console import ConsoleProvider

    selected = select_providers({"app.env": "production", "notifications.sms.provider": ""}, [ConsoleProvider(10)])
    assert selected == {}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("no provider sends sms" in w and "sending sms is refused" in w for w in warnings)


@pytest.mark.parametrize("allowed, proxies", [
    ("127.0.0.1", "127.0.0.1"),  # production.ini's proxy, allowed as if it were the scraper
    ("10.0.0.0/8", "10.1.2.3"),  # a proxy inside the allowed network
    ("10.0.0.5", "10.0.0.0/24"),
    ("192.0.2.9, 2001:db8::/32", "2001:db8::1"),
])
def test_an_allowlist_overlapping_the_trusted_proxies_stops_startup_without_a_token(allowed, proxies):
    with pytest.raises(SettingsError) as info:
        read({**MINIMAL, "metrics.allowed_networks": allowed, "app.trusted_proxies": proxies})
    message = str(info.value)
    assert "'metrics.allowed_networks' and 'app.trusted_proxies' overlap" in message
    assert "metrics.token" in message


def test_an_overlapping_allowlist_is_accepted_with_a_token_and_a_separate_one_without():
    token = "t" * 32
    settings = read({**MINIMAL, "metrics.allowed_networks": "127.0.0.1", "app.trusted_proxies": "127.0.0.1"},
                    {"GG_METRICS_TOKEN": token})
    assert settings["metrics.token"] == token
    separate = read({**MINIMAL, "metrics.allowed_networks": "10.0.0.0/8, 2001:db8::/32",
                     "app.trusted_proxies": "127.0.0.1, ::1, 192.0.2.0/24"})
    assert len(separate["metrics.allowed_networks"]) == 2
    assert read({**MINIMAL, "metrics.allowed_networks": "127.0.0.1"})["app.trusted_proxies"] == ()
