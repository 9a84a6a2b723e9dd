"""Configuration: TOML, environment overrides, and one clear line per problem."""

import re
from decimal import Decimal
from pathlib import Path

import pytest

from bridge.config import SECTIONS, ConfigError, load_settings

REQUIRED = {
    "BRIDGE_WEBHOOKS_SECRET": "a-long-random-webhook-secret",
    "BRIDGE_REFERSION_PUBLIC_KEY": "pub_live_1",
    "BRIDGE_REFERSION_SECRET_KEY": "sec_live_2",
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def problems(error: ConfigError) -> list[str]:
    return str(error).splitlines()


def test_defaults_from_the_spec():
    settings = load_settings(None, environ=REQUIRED)
    assert (settings.server.host, settings.server.port) == ("127.0.0.1", 8000)
    assert settings.database.path == "instance/bridge.sqlite3"
    assert settings.bigcommerce.api_url == "https://api.bigcommerce.com"
    assert settings.bigcommerce.timeout == 10
    assert settings.refersion.orders_url == "https://inbound-webhooks.refersion.com/tracker/orders/paid"
    assert settings.refersion.timeout == 20
    assert settings.rules.order_statuses == frozenset({2, 3, 8, 9, 10, 11})
    assert settings.rules.payment_statuses == frozenset({"captured", "paid"})
    assert (settings.rules.accept_authorized, settings.rules.dry_run, settings.rules.excluded_coupons) == (False, False, ())
    assert settings.worker.poll_interval == 0.2
    assert settings.worker.retry.schedule[0] == 5
    assert (settings.server.encryption_keys, settings.server.frame_ancestors, settings.server.metrics_token) == ((), (), None)
    assert settings.refersion.webhook_secret is None
    assert (settings.rules.channel_ids, settings.rules.report_gift_certificates) == (None, False)
    assert settings.worker.reconcile_interval == 900
    assert (settings.alerts.webhook_url, settings.alerts.quiet_hours) == (None, 6)
    assert settings.coupons is None  # coupon push is off
    assert settings.storefront.allowed_origins == ()  # the store's own domains


def test_toml_file_with_environment_overrides(tmp_path):
    path = write(
        tmp_path,
        """
        [server]
        port = 9000
        [bigcommerce]
        store_hash = "abc123"
        access_token = "from-file"
        api_url = "http://127.0.0.1:5000/"
        [webhooks]
        secret = "file-secret-0123456789"
        [refersion]
        public_key = "pub_file"
        secret_key = "sec_file"
        [rules]
        excluded_coupons = ["HOLIDAY", "SITEWIDE"]
        """,
    )
    env = {
        "BRIDGE_SERVER_PORT": "9100",
        "BRIDGE_BIGCOMMERCE_ACCESS_TOKEN": "from-env",
        "BRIDGE_RULES_ORDER_STATUSES": "[10, 11]",
        "BRIDGE_RULES_PAYMENT_STATUSES": "captured, paid, authorized",
        "BRIDGE_RULES_DRY_RUN": "true",
    }
    settings = load_settings(path, environ=env)
    assert settings.server.port == 9100
    assert settings.bigcommerce.access_token == "from-env"
    assert settings.bigcommerce.api_url == "http://127.0.0.1:5000"
    assert settings.rules.order_statuses == frozenset({10, 11})
    assert settings.rules.payment_statuses == frozenset({"captured", "paid", "authorized"})
    assert settings.rules.dry_run is True
    assert settings.rules.excluded_coupons == ("HOLIDAY", "SITEWIDE")
    assert settings.source == str(path)


def test_config_path_from_bridge_config(tmp_path):
    path = write(tmp_path, '[webhooks]\nsecret = "file-secret-0123456789"\n[refersion]\npublic_key = "p"\nsecret_key = "s"\n')
    assert load_settings(None, environ={"BRIDGE_CONFIG": str(path)}).webhooks.secret == "file-secret-0123456789"


EXAMPLE = Path(__file__).parents[2] / "config.example.toml"
SPEC = Path(__file__).parents[3] / "shared" / "SPEC.md"
FERNET_KEY = "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHg="  # base64 of 32 bytes


def test_the_example_file_is_valid_once_secrets_are_given():
    settings = load_settings(EXAMPLE, environ=REQUIRED)
    assert settings.rules.order_statuses == frozenset({2, 3, 8, 9, 10, 11})


def documented_keys(text: str) -> dict[str, list[str]]:
    """``[section]`` tables of a TOML example and the keys shown in each, set or commented out."""
    keys: dict[str, list[str]] = {}
    section = None
    for line in text.splitlines():
        if match := re.fullmatch(r"\[(\w+)\]", line.strip()):
            section = keys.setdefault(match[1], [])
        elif section is not None and (match := re.match(r"#? ?(\w+) = ", line)):
            section.append(match[1])
    return keys


def test_every_key_of_the_example_is_accepted_with_its_example_value(tmp_path):
    text = EXAMPLE.read_text()
    for section, keys in documented_keys(text).items():
        assert section in SECTIONS, section
        assert set(keys) <= set(SECTIONS[section]().fields), section
    uncommented = write(tmp_path, re.sub(r"(?m)^# ?(\w+ = )", r"\1", text))
    secrets = {
        "BRIDGE_SERVER_ENCRYPTION_KEY": FERNET_KEY,
        "BRIDGE_SERVER_SESSION_SECRET": "session-0123456789",
        "BRIDGE_SERVER_ADMIN_TOKEN": "admin-0123456789",
        "BRIDGE_SERVER_METRICS_TOKEN": "metrics-0123456789",
        "BRIDGE_BIGCOMMERCE_ACCESS_TOKEN": "tok-0123456789",
        "BRIDGE_BIGCOMMERCE_CLIENT_ID": "client-0123456789",
        "BRIDGE_BIGCOMMERCE_CLIENT_SECRET": "client-secret-0123456789",
        "BRIDGE_REFERSION_WEBHOOK_SECRET": "refersion-hook-0123456789",
        "BRIDGE_ALERTS_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/0123456789",
    }
    settings = load_settings(uncommented, environ={**REQUIRED, **secrets})
    assert settings.coupons is not None


def spec_keys() -> list[str]:
    """Every ``section.key`` in the first column of SPEC section 2's table."""
    text = SPEC.read_text()
    section = text[text.index("## 2. Configuration") : text.index("## 3.")]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    return [key for row in rows for key in re.findall(r"`([a-z_]+\.[a-z_*]+)`", row)]


@pytest.mark.skipif(not SPEC.exists(), reason="the SPEC is not beside the repository")
def test_the_example_documents_every_key_of_the_spec():
    keys = spec_keys()
    assert len(keys) > 30
    documented = documented_keys(EXAMPLE.read_text())
    sections = [key.split(".") for key in keys]
    missing = [f"{s}.{k}" for s, k in sections if s not in documented or (k != "*" and k not in documented[s])]
    assert not missing  # coupons.* is a [coupons] table


def test_the_new_keys_are_validated():
    env = {
        **REQUIRED,
        "BRIDGE_SERVER_ENCRYPTION_KEY": f"{FERNET_KEY},bm90LWEta2V5",
        "BRIDGE_SERVER_FRAME_ANCESTORS": "https://admin.example.org/, https://*.shop.test",
        "BRIDGE_RULES_CHANNEL_IDS": "1, 0",
        "BRIDGE_RULES_REPORT_GIFT_CERTIFICATES": "sometimes",
        "BRIDGE_WORKER_RECONCILE_INTERVAL": "-1",
        "BRIDGE_ALERTS_WEBHOOK_URL": "hooks.slack.com/services/T0",
        "BRIDGE_ALERTS_QUIET_HOURS": "0",
        "BRIDGE_STOREFRONT_ALLOWED_ORIGINS": "https://*.shop.test",
        "BRIDGE_COUPONS_API": "promotions",
    }
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ=env)
    assert problems(caught.value) == [
        "config error: alerts.quiet_hours: Must be greater than 0.",
        "config error: alerts.webhook_url: Not a valid URL.",
        'config error: coupons.promotion_id: is required with api = "promotions" (the id of the promotion codes are added to).',
        "config error: rules.channel_ids: 0 is not a channel id (a whole number, 1 or more; 1 is the storefront).",
        "config error: rules.report_gift_certificates: Not a valid boolean.",
        "config error: server.encryption_key: item 2: Not a Fernet key (URL-safe base64 of 32 bytes); generate one with "
        "`bridge keys generate`.",
        "config error: server.frame_ancestors: 'https://admin.example.org/' is not an origin "
        "(scheme://host[:port], no path, as in https://shop.example.com).",
        "config error: storefront.allowed_origins: 'https://*.shop.test' is not an origin "
        "(scheme://host[:port], no path, as in https://shop.example.com).",
        "config error: worker.reconcile_interval: Must be greater than or equal to 0.",
    ]
    assert "bm90LWEta2V5" not in str(caught.value)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ({"promotion_id": "12"}, None),
        ({"api": "coupons", "discount_type": "free_shipping"}, None),
        ({"api": "coupons"}, 'coupons.amount: is required with api = "coupons" and discount_type = "percentage_discount".'),
        ({"api": "v3", "promotion_id": "12"}, "coupons.api: Must be one of: promotions, coupons."),
    ],
)
def test_a_coupon_template_is_complete_or_refused(template, message):
    env = {**REQUIRED, **{f"BRIDGE_COUPONS_{key.upper()}": value for key, value in template.items()}}
    if message is None:
        assert load_settings(None, environ=env).coupons is not None
    else:
        with pytest.raises(ConfigError) as caught:
            load_settings(None, environ=env)
        assert problems(caught.value) == [f"config error: {message}"]


def test_the_new_keys_load():
    env = {
        **REQUIRED,
        "BRIDGE_SERVER_ENCRYPTION_KEY": FERNET_KEY,
        "BRIDGE_SERVER_FRAME_ANCESTORS": "https://admin.example.org, https://*.shop.test:8443",
        "BRIDGE_SERVER_METRICS_TOKEN": "metrics-0123456789",
        "BRIDGE_REFERSION_WEBHOOK_SECRET": "refersion-hook-0123456789",
        "BRIDGE_RULES_CHANNEL_IDS": "[1, 664]",
        "BRIDGE_RULES_REPORT_GIFT_CERTIFICATES": "true",
        "BRIDGE_WORKER_RECONCILE_INTERVAL": "0",
        "BRIDGE_ALERTS_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/0123456789",
        "BRIDGE_ALERTS_QUIET_HOURS": "1.5",
        "BRIDGE_STOREFRONT_ALLOWED_ORIGINS": "https://shop.test,http://localhost:3000",
        "BRIDGE_COUPONS_API": "coupons",
        "BRIDGE_COUPONS_DISCOUNT_TYPE": "per_total_discount",
        "BRIDGE_COUPONS_AMOUNT": "5.50",
        "BRIDGE_COUPONS_APPLIES_TO": "[18, 23]",
    }
    settings = load_settings(None, environ=env)
    assert settings.server.encryption_keys == (FERNET_KEY,)
    assert settings.server.frame_ancestors == ("https://admin.example.org", "https://*.shop.test:8443")
    assert (settings.rules.channel_ids, settings.rules.report_gift_certificates) == (frozenset({1, 664}), True)
    assert (settings.worker.reconcile_interval, settings.alerts.quiet_hours) == (0, 1.5)
    assert settings.storefront.allowed_origins == ("https://shop.test", "http://localhost:3000")
    coupons = settings.coupons
    assert (coupons.api, coupons.discount_type, coupons.amount, coupons.applies_to) == (
        "coupons",
        "per_total_discount",
        Decimal("5.50"),
        (18, 23),
    )
    for secret in ("metrics-0123456789", "refersion-hook-0123456789", "0123456789", FERNET_KEY):
        assert secret not in repr(settings)
    assert {FERNET_KEY, "metrics-0123456789", "refersion-hook-0123456789", env["BRIDGE_ALERTS_WEBHOOK_URL"]} <= set(settings.secrets())


def test_every_missing_required_key_is_named_with_its_variable():
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ={})
    assert problems(caught.value) == [
        "config error: webhooks.secret is required (set it in the config file or BRIDGE_WEBHOOKS_SECRET)",
    ]


def test_single_store_mode_requires_the_refersion_key_pair():
    environ = {"BRIDGE_WEBHOOKS_SECRET": "w" + "0123456789abcdef", "BRIDGE_BIGCOMMERCE_STORE_HASH": "abc123"}
    environ["BRIDGE_BIGCOMMERCE_ACCESS_TOKEN"] = "t0k3n-0123456789"
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ=environ)
    assert [line.split(" (set it")[0] for line in problems(caught.value)] == [
        "config error: refersion.public_key is required in single-store mode (bigcommerce.store_hash is set)",
        "config error: refersion.secret_key is required in single-store mode (bigcommerce.store_hash is set)",
    ]


def test_app_mode_takes_refersion_keys_per_store_but_never_half_a_pair():
    environ = {"BRIDGE_WEBHOOKS_SECRET": "w" + "0123456789abcdef"}
    settings = load_settings(None, environ=environ)
    assert (settings.refersion.public_key, settings.refersion.secret_key) == (None, None)
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ={**environ, "BRIDGE_REFERSION_PUBLIC_KEY": "pub_live_8f7e6d"})
    assert problems(caught.value)[0].startswith("config error: refersion.secret_key is required with refersion.public_key")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("BRIDGE_SERVER_PORT", "eighty", "config error: server.port: Not a valid integer."),
        ("BRIDGE_SERVER_PORT", "70000", "config error: server.port: Must be greater than or equal to 1 and less than or equal to 65535."),
        ("BRIDGE_WEBHOOKS_SECRET", "short", "config error: webhooks.secret: Must be at least 16 characters (a long random string)."),
        ("BRIDGE_BIGCOMMERCE_API_URL", "api.bigcommerce.com", "config error: bigcommerce.api_url: Not a valid URL."),
        ("BRIDGE_BIGCOMMERCE_TIMEOUT", "0", "config error: bigcommerce.timeout: Must be greater than 0 and less than or equal to 300."),
        ("BRIDGE_RULES_ACCEPT_AUTHORIZED", "maybe", "config error: rules.accept_authorized: Not a valid boolean."),
        ("BRIDGE_RULES_ORDER_STATUSES", "[2, x]", "config error: rules.order_statuses: Not a valid list: "),
        ("BRIDGE_WORKER_RETRY_SCHEDULE", "[]", "config error: worker.retry_schedule: Length must be between 1 and 100."),
    ],
)
def test_invalid_values_name_the_key(variable, value, message):
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ={**REQUIRED, variable: value})
    lines = problems(caught.value)
    assert len(lines) == 1
    assert lines[0].startswith(message)


def test_a_mistyped_payment_status_is_refused_with_the_choices():
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ={**REQUIRED, "BRIDGE_RULES_PAYMENT_STATUSES": "captured,capture"})
    (line,) = problems(caught.value)
    assert line == (
        "config error: rules.payment_statuses: 'capture' is not a BigCommerce payment status (one of: authorized, captured, "
        "capture pending, declined, held for review, paid, partially refunded, pending, refunded, void, void pending)."
    )


@pytest.mark.parametrize(
    ("variable", "value", "messages"),
    [
        ("BRIDGE_RULES_ORDER_STATUSES", "2, x, -1", ["'x' is not a status id", "-1 is not a status id"]),
        ("BRIDGE_RULES_PAYMENT_STATUSES", "capturd,paid,voided", ["'capturd' is not a BigCommerce", "'voided' is not a BigCommerce"]),
        ("BRIDGE_WORKER_RETRY_SCHEDULE", "5, 0, soon", ["'0': Must be greater than 0", "'soon': Not a valid number."]),
        ("BRIDGE_RULES_EXCLUDED_COUPONS", '["HOLIDAY", ""]', ["'': Shorter than minimum length 1."]),
    ],
)
def test_list_errors_name_the_bad_values_one_line_each(variable, value, messages):
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ={**REQUIRED, variable: value})
    key = variable.removeprefix("BRIDGE_").lower().replace("_", ".", 1)
    lines = problems(caught.value)
    assert len(lines) == len(messages)
    for message in messages:
        assert any(line.startswith(f"config error: {key}: {message}") for line in lines), lines


def test_half_an_api_account_is_refused():
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ={**REQUIRED, "BRIDGE_BIGCOMMERCE_STORE_HASH": "abc123"})
    assert problems(caught.value) == [
        "config error: bigcommerce.access_token: is required when the other half of the store-level API account is set."
    ]


def test_unknown_keys_and_sections_are_refused_with_a_suggestion(tmp_path):
    path = write(tmp_path, '[rules]\norder_status = [2]\n[refersoin]\npublic_key = "x"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ=REQUIRED)
    assert problems(caught.value) == [
        "config error: refersoin: unknown key (did you mean refersion?)",
        "config error: rules.order_status: unknown key (did you mean rules.order_statuses?)",
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [("[server\nport = 1", "is not valid TOML"), ("server = 3", "server: must be a [server] table")],
)
def test_broken_files_are_reported(tmp_path, content, message):
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, content), environ=REQUIRED)
    assert message in str(caught.value)


def test_a_missing_file_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", environ=REQUIRED)


def test_secrets_stay_out_of_the_settings_repr():
    settings = load_settings(
        None, environ={**REQUIRED, "BRIDGE_BIGCOMMERCE_STORE_HASH": "abc123", "BRIDGE_BIGCOMMERCE_ACCESS_TOKEN": "tok-secret-1"}
    )
    text = repr(settings)
    for secret in ("a-long-random-webhook-secret", "sec_live_2", "tok-secret-1"):
        assert secret not in text
    assert set(settings.secrets()) == {"a-long-random-webhook-secret", "sec_live_2", "tok-secret-1"}


@pytest.mark.parametrize("store_hash", ["abc123\n", "abc123\n\n", "abc 123", ""])
def test_a_store_hash_must_be_letters_and_digits_only(store_hash):
    env = {**REQUIRED, "BRIDGE_BIGCOMMERCE_STORE_HASH": store_hash, "BRIDGE_BIGCOMMERCE_ACCESS_TOKEN": "tok-secret-1"}
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ=env)
    assert problems(caught.value)[0].startswith("config error: bigcommerce.store_hash: Not a store hash")


def test_unknown_environment_variables_are_refused_with_a_suggestion():
    env = {**REQUIRED, "BRIDGE_REFERSION_SECRETKEY": "sec_do_not_print", "BRIDGE_RULES_ORDER_STATUS": "[2]", "BRIDGE_ZZZ": "1"}
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ=env)
    assert problems(caught.value) == [
        "config error: BRIDGE_REFERSION_SECRETKEY: unknown setting (did you mean BRIDGE_REFERSION_SECRET_KEY?)",
        "config error: BRIDGE_RULES_ORDER_STATUS: unknown setting (did you mean BRIDGE_RULES_ORDER_STATUSES?)",
        "config error: BRIDGE_ZZZ: unknown setting",
    ]
    assert "sec_do_not_print" not in str(caught.value)


def test_bridge_config_and_other_environment_variables_are_not_settings(tmp_path):
    path = write(tmp_path, "")
    settings = load_settings(None, environ={**REQUIRED, "BRIDGE_CONFIG": str(path), "BRIDGEPORT": "x", "WEB_CONCURRENCY": "2"})
    assert settings.source == str(path)


SECRET_VARIABLES = [
    "BRIDGE_WEBHOOKS_SECRET",
    "BRIDGE_REFERSION_PUBLIC_KEY",
    "BRIDGE_REFERSION_SECRET_KEY",
    "BRIDGE_SERVER_SESSION_SECRET",
    "BRIDGE_SERVER_ADMIN_TOKEN",
    "BRIDGE_BIGCOMMERCE_ACCESS_TOKEN",
    "BRIDGE_BIGCOMMERCE_CLIENT_SECRET",
    "BRIDGE_SERVER_METRICS_TOKEN",
    "BRIDGE_REFERSION_WEBHOOK_SECRET",
]


@pytest.mark.parametrize("variable", SECRET_VARIABLES)
@pytest.mark.parametrize(
    "placeholder",
    [
        "change-me-to-a-long-random-string",
        "CHANGEME_please_0123456789",
        "sec_your_key_0123456789abcdef",
        "pub_your_key",
        "your public key",
        "your-secret-here-0123456789",
        "replace-me-with-a-real-secret",
        "an-example-secret-0123456789",
        "xxxxxxxxxxxxxxxxxxxxxxxx",
        "0000000000000000",
        "sec_...",
        "placeholder-placeholder",
    ],
)
def test_placeholder_secrets_are_refused_naming_the_key_not_the_value(variable, placeholder):
    env = {**REQUIRED, "BRIDGE_BIGCOMMERCE_STORE_HASH": "abc123", "BRIDGE_BIGCOMMERCE_ACCESS_TOKEN": "tok-secret-1", variable: placeholder}
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ=env)
    key = variable.removeprefix("BRIDGE_").lower().replace("_", ".", 1)
    lines = problems(caught.value)
    assert any(line.startswith(f"config error: {key}: Looks like a placeholder, not a real value: ") for line in lines), lines
    assert placeholder not in str(caught.value)


def test_real_looking_secrets_are_accepted():
    import secrets

    values = [secrets.token_urlsafe(32), secrets.token_hex(32), "whsec-test-0123456789-abcdefghij", "bc-client-secret-for-signing"]
    for value in values:
        env = {**REQUIRED, **{variable: value for variable in SECRET_VARIABLES}, "BRIDGE_BIGCOMMERCE_STORE_HASH": "abc123"}
        assert load_settings(None, environ=env).webhooks.secret == value
