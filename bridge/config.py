"""Configuration: one TOML file plus ``BRIDGE_<SECTION>_<KEY>`` environment overrides.

Every key is validated with marshmallow at start-up. A missing required key or an
invalid value raises :class:`ConfigError` whose message names the key, one line per
problem. No secret ever falls back to a generated or dummy value.
"""

from __future__ import annotations

import dataclasses
import decimal
import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, post_load, validate, validates_schema

from bridge.core.retry import RetryPolicy
from bridge.core.rules import PAYMENT_STATUSES, Policy

ENV_PREFIX = "BRIDGE_"
CONFIG_ENV = "BRIDGE_CONFIG"  # the file's path, not a setting
DEFAULT_RETRY_SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
MIN_SECRET_LENGTH = 16
# Values copied from documentation rather than from the service: never a real secret.
PLACEHOLDER = re.compile(r"change.?me|replace.?me|placeholder|example|dummy|your([\W_]|key|secret|token)|xxxx|\.\.\.|…", re.IGNORECASE)
GENERATE = "generate one with python -c 'import secrets; print(secrets.token_urlsafe(32))'"
FROM_REFERSION = "copy the key pair from Refersion › Account › Settings › Refersion API"
FROM_BIGCOMMERCE = "copy it from the store's API account (Settings › Store-level API accounts)"
GENERATE_FERNET = "generate one with `bridge keys generate`"
ORIGIN_ERROR = "{input!r} is not an origin (scheme://host[:port], no path, as in https://shop.example.com)."


class ConfigError(Exception):
    """The configuration cannot be used; the message names every offending key."""


class ListFromText(fields.List):
    """A list that may also come from an environment variable as text.

    ``[2, 3]`` is read as a TOML array; anything else is split on commas. An item's
    error names the item, not its index.
    """

    def __init__(self, *args, secret: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.secret = secret

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    value = tomllib.loads(f"v = {text}")["v"]
                except tomllib.TOMLDecodeError as error:
                    raise ValidationError(f"Not a valid list: {error}.") from error
            else:
                value = [part.strip() for part in text.split(",") if part.strip()]
        try:
            return super()._deserialize(value, attr, data, **kwargs)
        except ValidationError as error:
            if not isinstance(error.messages, dict):
                raise
            raise ValidationError(
                [
                    self._item_message(index, value[index], message)
                    for index, messages in sorted(error.messages.items())
                    for message in messages
                ]
            ) from None

    def _item_message(self, index: int, item, message: str) -> str:
        if self.secret:
            return f"item {index + 1}: {message}"
        # Messages written for the item name it already (as read, or as parsed from text).
        names = tuple(name for name in (repr(item), str(item)) if name)
        return message if message.startswith(names) else f"{item!r}: {message}"


def _fullmatch(pattern: str, error: str) -> validate.Regexp:
    """A Regexp validator for the whole value: ``^...$`` would let a trailing newline through."""
    return validate.Regexp(rf"\A(?:{pattern})\Z", error=error)


class NotPlaceholder(validate.Validator):
    """Refuses placeholder values such as ``change-me`` or ``xxxx``, without echoing them."""

    def __init__(self, fix: str):
        self.fix = fix

    def __call__(self, value: str) -> str:
        if PLACEHOLDER.search(value) or (len(value) > 1 and len(set(value)) == 1):
            raise ValidationError(f"Looks like a placeholder, not a real value: {self.fix}.")
        return value


def _secret(fix: str, **kwargs) -> fields.String:
    return fields.String(validate=[validate.Length(min=1), NotPlaceholder(fix)], **kwargs)


def _origins(wildcard: bool = False) -> ListFromText:
    """A list of web origins; CSP sources (``wildcard``) may start with ``*.``."""
    host = r"(\*\.)?" if wildcard else ""
    origin = _fullmatch(rf"https?://{host}[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(:[0-9]{{1,5}})?", error=ORIGIN_ERROR)
    return ListFromText(fields.String(validate=origin), load_default=list)


class _Section(Schema):
    class Meta:
        unknown = RAISE


@dataclass(frozen=True)
class ServerSettings:
    public_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    session_secret: str | None = field(default=None, repr=False)
    admin_token: str | None = field(default=None, repr=False)
    encryption_keys: tuple[str, ...] = field(default=(), repr=False)  # the first encrypts, all decrypt
    frame_ancestors: tuple[str, ...] = ()
    metrics_token: str | None = field(default=None, repr=False)


class ServerSchema(_Section):
    public_url = fields.Url(load_default=None, schemes={"http", "https"}, require_tld=False)
    host = fields.String(load_default="127.0.0.1", validate=validate.Length(min=1))
    port = fields.Integer(load_default=8000, validate=validate.Range(min=1, max=65535))
    session_secret = _secret(GENERATE, load_default=None)
    admin_token = _secret(GENERATE, load_default=None)
    # Fernet's own format, checked without its library: 43 URL-safe base64 characters and
    # one "=" are exactly 32 bytes.
    encryption_key = ListFromText(
        fields.String(
            validate=[
                _fullmatch(r"[A-Za-z0-9_-]{43}=", error=f"Not a Fernet key (URL-safe base64 of 32 bytes); {GENERATE_FERNET}."),
                NotPlaceholder(GENERATE_FERNET),
            ]
        ),
        secret=True,
        load_default=list,
    )
    frame_ancestors = _origins(wildcard=True)
    metrics_token = _secret(GENERATE, load_default=None)

    @validates_schema
    def sign_in_is_safe(self, data, **kwargs):
        errors = {}
        for key in ("session_secret", "admin_token", "metrics_token"):
            if data.get(key) and len(data[key]) < MIN_SECRET_LENGTH:
                errors[key] = [f"Must be at least {MIN_SECRET_LENGTH} characters (a long random string); {GENERATE}"]
        if data.get("admin_token") and not data.get("session_secret"):
            errors.setdefault("session_secret", []).append(
                f"Required when server.admin_token is set (it signs the sign-in session); {GENERATE}"
            )
        if errors:
            raise ValidationError(errors)

    @post_load
    def make(self, data, **kwargs):
        if data["public_url"]:
            data["public_url"] = data["public_url"].rstrip("/")
        data["encryption_keys"] = tuple(data.pop("encryption_key"))
        data["frame_ancestors"] = tuple(data["frame_ancestors"])
        return ServerSettings(**data)


@dataclass(frozen=True)
class DatabaseSettings:
    path: str = "instance/bridge.sqlite3"
    retention_days: int = 90


class DatabaseSchema(_Section):
    path = fields.String(load_default="instance/bridge.sqlite3", validate=validate.Length(min=1))
    retention_days = fields.Integer(load_default=90, validate=validate.Range(min=1))

    @post_load
    def make(self, data, **kwargs):
        return DatabaseSettings(**data)


@dataclass(frozen=True)
class BigCommerceSettings:
    store_hash: str | None = None
    access_token: str | None = field(default=None, repr=False)
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    api_url: str = "https://api.bigcommerce.com"
    login_url: str = "https://login.bigcommerce.com"
    timeout: float = 10.0


class BigCommerceSchema(_Section):
    store_hash = fields.String(
        load_default=None,
        validate=_fullmatch(r"[A-Za-z0-9]{1,64}", error="Not a store hash (letters and digits, as in stores/abc123)."),
    )
    access_token = _secret(FROM_BIGCOMMERCE, load_default=None)
    client_id = fields.String(load_default=None, validate=validate.Length(min=1))
    client_secret = _secret(FROM_BIGCOMMERCE, load_default=None)
    api_url = fields.Url(load_default="https://api.bigcommerce.com", schemes={"http", "https"}, require_tld=False)
    login_url = fields.Url(load_default="https://login.bigcommerce.com", schemes={"http", "https"}, require_tld=False)
    timeout = fields.Float(load_default=10.0, validate=validate.Range(min=0, min_inclusive=False, max=300))

    @validates_schema
    def store_hash_and_token_together(self, data, **kwargs):
        if bool(data.get("store_hash")) != bool(data.get("access_token")):
            missing = "access_token" if data.get("store_hash") else "store_hash"
            raise ValidationError("is required when the other half of the store-level API account is set.", missing)

    @post_load
    def make(self, data, **kwargs):
        data["api_url"] = data["api_url"].rstrip("/")
        data["login_url"] = data["login_url"].rstrip("/")
        return BigCommerceSettings(**data)


@dataclass(frozen=True)
class WebhooksSettings:
    secret: str = field(repr=False)


class WebhooksSchema(_Section):
    secret = fields.String(
        required=True,
        validate=[
            validate.Length(
                min=MIN_SECRET_LENGTH, max=4096, error=f"Must be at least {MIN_SECRET_LENGTH} characters (a long random string)."
            ),
            NotPlaceholder(GENERATE),
        ],
    )

    @post_load
    def make(self, data, **kwargs):
        return WebhooksSettings(**data)


@dataclass(frozen=True)
class RefersionSettings:
    public_key: str | None = None  # the default pair; app stores may set their own
    secret_key: str | None = field(default=None, repr=False)
    webhook_secret: str | None = field(default=None, repr=False)
    orders_url: str = "https://inbound-webhooks.refersion.com/tracker/orders/paid"
    api_url: str = "https://api.refersion.com/v2"
    timeout: float = 20.0


class RefersionSchema(_Section):
    # Required in single-store mode (checked with [bigcommerce] in load_settings).
    public_key = _secret(FROM_REFERSION, load_default=None)
    secret_key = _secret(FROM_REFERSION, load_default=None)
    webhook_secret = _secret("copy it from Refersion's webhook settings", load_default=None)
    orders_url = fields.Url(
        load_default="https://inbound-webhooks.refersion.com/tracker/orders/paid", schemes={"http", "https"}, require_tld=False
    )
    api_url = fields.Url(load_default="https://api.refersion.com/v2", schemes={"http", "https"}, require_tld=False)
    timeout = fields.Float(load_default=20.0, validate=validate.Range(min=0, min_inclusive=False, max=300))

    @post_load
    def make(self, data, **kwargs):
        data["api_url"] = data["api_url"].rstrip("/")
        return RefersionSettings(**data)


PAYMENT_STATUS_ERROR = "{input!r} is not a BigCommerce payment status (one of: {choices})."
CHANNEL_ID_ERROR = "{input!r} is not a channel id (a whole number, 1 or more; 1 is the storefront)."
STATUS_ID_ERROR = "{input!r} is not a status id (a whole number, 0 or more: 2 Shipped, 10 Completed, ...)."


class RulesSchema(_Section):
    order_statuses = ListFromText(
        fields.Integer(validate=validate.Range(min=0, error=STATUS_ID_ERROR), error_messages={"invalid": STATUS_ID_ERROR}),
        load_default=lambda: [2, 3, 8, 9, 10, 11],
    )
    payment_statuses = ListFromText(
        fields.String(validate=validate.OneOf(PAYMENT_STATUSES, error=PAYMENT_STATUS_ERROR)),
        load_default=lambda: ["captured", "paid"],
    )
    accept_authorized = fields.Boolean(load_default=False)
    excluded_coupons = ListFromText(fields.String(validate=validate.Length(min=1)), load_default=list)
    sync_cancellations = fields.Boolean(load_default=True)
    channel_ids = ListFromText(
        fields.Integer(validate=validate.Range(min=1, error=CHANNEL_ID_ERROR), error_messages={"invalid": CHANNEL_ID_ERROR}),
        load_default=list,
    )
    report_gift_certificates = fields.Boolean(load_default=False)
    dry_run = fields.Boolean(load_default=False)

    @post_load
    def make(self, data, **kwargs):
        return Policy(
            order_statuses=frozenset(data["order_statuses"]),
            payment_statuses=frozenset(s.lower() for s in data["payment_statuses"]),
            accept_authorized=data["accept_authorized"],
            excluded_coupons=tuple(data["excluded_coupons"]),
            sync_cancellations=data["sync_cancellations"],
            dry_run=data["dry_run"],
            channel_ids=frozenset(data["channel_ids"]) or None,
            report_gift_certificates=data["report_gift_certificates"],
        )


@dataclass(frozen=True)
class WorkerSettings:
    poll_interval: float = 0.2
    reconcile_interval: float = 900.0  # 0: no reconcile passes
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(DEFAULT_RETRY_SCHEDULE))


class WorkerSchema(_Section):
    poll_interval = fields.Float(load_default=0.2, validate=validate.Range(min=0.01, max=60))
    reconcile_interval = fields.Float(load_default=900.0, validate=validate.Range(min=0))
    retry_schedule = ListFromText(
        fields.Float(validate=validate.Range(min=0, min_inclusive=False, max=7 * 86400)),
        load_default=lambda: list(DEFAULT_RETRY_SCHEDULE),
        validate=validate.Length(min=1, max=100),
    )

    @post_load
    def make(self, data, **kwargs):
        return WorkerSettings(
            poll_interval=data["poll_interval"],
            reconcile_interval=data["reconcile_interval"],
            retry=RetryPolicy(tuple(data["retry_schedule"])),
        )


@dataclass(frozen=True)
class AlertsSettings:
    webhook_url: str | None = field(default=None, repr=False)  # a Slack hook URL holds its token
    quiet_hours: float = 6.0


class AlertsSchema(_Section):
    webhook_url = fields.Url(
        load_default=None,
        schemes={"http", "https"},
        require_tld=False,
        validate=NotPlaceholder("copy the incoming webhook URL from Slack (or a compatible service)"),
    )
    quiet_hours = fields.Float(load_default=6.0, validate=validate.Range(min=0, min_inclusive=False))

    @post_load
    def make(self, data, **kwargs):
        return AlertsSettings(**data)


COUPON_APIS = ("promotions", "coupons")
COUPON_DISCOUNT_TYPES = ("percentage_discount", "per_item_discount", "per_total_discount", "free_shipping")


@dataclass(frozen=True)
class CouponSettings:
    """The template for coupon codes pushed to BigCommerce (``bridge coupons push``)."""

    api: str = "promotions"
    promotion_id: int | None = None
    discount_type: str = "percentage_discount"
    amount: decimal.Decimal | None = None
    applies_to: tuple[int, ...] = ()  # category ids; empty: the whole catalogue
    min_purchase: decimal.Decimal | None = None  # with api "coupons": the order subtotal a code needs
    expires_after_days: int | None = None  # with api "coupons": a code expires this many days after it is created
    max_uses: int = 0  # uses of each code in all; 0: unlimited
    max_uses_per_customer: int = 0  # uses of each code by one customer; 0: unlimited


# Keys the V3 promotions API takes from the promotion itself, not from each code.
PROMOTION_OWNS = {
    "min_purchase": "the promotion's minimum spend",
    "expires_after_days": "the promotion's end date",
    "discount_type": "the promotion's action",
    "amount": "the promotion's action",
    "applies_to": "the promotion's rules",
}


class CouponsSchema(_Section):
    """No key set: coupon push is off (the section loads as None)."""

    api = fields.String(validate=validate.OneOf(COUPON_APIS, error="Must be one of: {choices}."))
    promotion_id = fields.Integer(validate=validate.Range(min=1))
    discount_type = fields.String(validate=validate.OneOf(COUPON_DISCOUNT_TYPES, error="Must be one of: {choices}."))
    amount = fields.Decimal(validate=validate.Range(min=0, min_inclusive=False))
    applies_to = ListFromText(fields.Integer(validate=validate.Range(min=0, error="{input!r} is not a category id.")))
    min_purchase = fields.Decimal(validate=validate.Range(min=0, min_inclusive=False, error="Must be more than 0 (leave it out for none)."))
    expires_after_days = fields.Integer(validate=validate.Range(min=1, max=3650, error="Must be a whole number of days from 1 to 3650."))
    max_uses = fields.Integer(validate=validate.Range(min=0, max=100_000, error="Must be a whole number from 0 (unlimited) to 100000."))
    max_uses_per_customer = fields.Integer(
        validate=validate.Range(min=0, max=100_000, error="Must be a whole number from 0 (unlimited) to 100000.")
    )

    @validates_schema
    def complete(self, data, **kwargs):
        if not data:
            return
        template = {**dataclasses.asdict(CouponSettings()), **data}
        if template["api"] == "promotions":
            for key in sorted(set(data) & set(PROMOTION_OWNS)):
                raise ValidationError(
                    f'is not used with api = "promotions": set {PROMOTION_OWNS[key]} on the promotion in BigCommerce '
                    f'(Marketing › Promotions), or use api = "coupons".',
                    key,
                )
        if template["api"] == "promotions" and template["promotion_id"] is None:
            raise ValidationError('is required with api = "promotions" (the id of the promotion codes are added to).', "promotion_id")
        if template["api"] == "coupons" and template["discount_type"] != "free_shipping" and template["amount"] is None:
            raise ValidationError(f'is required with api = "coupons" and discount_type = "{template["discount_type"]}".', "amount")

    @post_load
    def make(self, data, **kwargs):
        if not data:
            return None
        return CouponSettings(**{**data, "applies_to": tuple(data.get("applies_to", ()))})


@dataclass(frozen=True)
class StorefrontSettings:
    allowed_origins: tuple[str, ...] = ()  # empty: the store's own domains, read from BigCommerce
    trusted_proxies: int = 0  # proxies in front of the bridge whose X-Forwarded-For entries are believed


class StorefrontSchema(_Section):
    allowed_origins = _origins()
    trusted_proxies = fields.Integer(load_default=0, validate=validate.Range(min=0, max=10))

    @post_load
    def make(self, data, **kwargs):
        return StorefrontSettings(allowed_origins=tuple(data["allowed_origins"]), trusted_proxies=data["trusted_proxies"])


SECTIONS: dict[str, type[Schema]] = {
    "server": ServerSchema,
    "database": DatabaseSchema,
    "bigcommerce": BigCommerceSchema,
    "webhooks": WebhooksSchema,
    "refersion": RefersionSchema,
    "rules": RulesSchema,
    "worker": WorkerSchema,
    "alerts": AlertsSchema,
    "coupons": CouponsSchema,
    "storefront": StorefrontSchema,
}


@dataclass(frozen=True)
class Settings:
    server: ServerSettings
    database: DatabaseSettings
    bigcommerce: BigCommerceSettings
    webhooks: WebhooksSettings
    refersion: RefersionSettings
    rules: Policy
    worker: WorkerSettings
    alerts: AlertsSettings = field(default_factory=AlertsSettings)
    coupons: CouponSettings | None = None
    storefront: StorefrontSettings = field(default_factory=StorefrontSettings)
    source: str = "environment only"

    def secrets(self) -> list[str]:
        """Every secret value in the configuration, for redaction."""
        values = [
            self.server.session_secret,
            self.server.admin_token,
            *self.server.encryption_keys,
            self.server.metrics_token,
            self.bigcommerce.access_token,
            self.bigcommerce.client_secret,
            self.webhooks.secret,
            self.refersion.secret_key,
            self.refersion.webhook_secret,
            self.alerts.webhook_url,
        ]
        return [value for value in values if value]


def _env_name(section: str, key: str) -> str:
    return f"{ENV_PREFIX}{section}_{key}".upper()


def _read_file(path: Path) -> dict:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from None
    except OSError as error:
        raise ConfigError(f"config file {path} cannot be read: {error.strerror}") from None


def _unknown_key_message(name: str, known: list[str], what: str = "key") -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"{name}: unknown {what}{hint}"


def _flatten_errors(messages, prefix: str) -> list[str]:
    lines = []
    for key, value in messages.items():
        name = f"{prefix}.{key}" if key != "_schema" else prefix
        if isinstance(value, dict):
            lines.extend(_flatten_errors(value, name))
        else:
            lines.extend(f"{name}: {message}" for message in value)
    return lines


def _cross_section_problems(loaded: dict) -> list[str]:
    """Rules between sections, checked once every section loaded."""
    bc, ref = loaded.get("bigcommerce"), loaded.get("refersion")
    if bc is None or ref is None:
        return []
    problems = []
    for key, other in (("public_key", "secret_key"), ("secret_key", "public_key")):
        if getattr(ref, key) is None and (getattr(ref, other) is not None or bc.store_hash):
            why = "with refersion." + other if getattr(ref, other) is not None else "in single-store mode (bigcommerce.store_hash is set)"
            problems.append(
                f"refersion.{key} is required {why} (set it in the config file or {_env_name('refersion', key)}); {FROM_REFERSION}"
            )
    return problems


def load_settings(path: str | os.PathLike | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read, merge and validate the configuration.

    :param path: the TOML file; when None, ``BRIDGE_CONFIG`` from ``environ`` is used,
        and with neither the environment alone configures the bridge.
    :raise ConfigError: naming every missing or invalid key.
    """
    environ = os.environ if environ is None else environ
    path = path or environ.get(CONFIG_ENV) or None
    raw = _read_file(Path(path)) if path else {}

    problems: list[str] = []
    for name, value in raw.items():
        if name not in SECTIONS:
            problems.append(_unknown_key_message(name, list(SECTIONS)))
        elif not isinstance(value, dict):
            problems.append(f"{name}: must be a [{name}] table")

    known_env = [_env_name(name, key) for name, schema_class in SECTIONS.items() for key in schema_class().fields]
    for name in environ:
        if name.startswith(ENV_PREFIX) and name != CONFIG_ENV and name not in known_env:
            problems.append(_unknown_key_message(name, known_env, "setting"))

    loaded = {}
    for name, schema_class in SECTIONS.items():
        schema = schema_class()
        section = dict(raw.get(name) or {}) if isinstance(raw.get(name), dict) else {}
        for key in schema.fields:
            env_value = environ.get(_env_name(name, key))
            if env_value is not None:
                section[key] = env_value
        unknown = [key for key in section if key not in schema.fields]
        for key in unknown:
            problems.append(_unknown_key_message(f"{name}.{key}", [f"{name}.{k}" for k in schema.fields]))
            section.pop(key)
        try:
            loaded[name] = schema.load(section, unknown=EXCLUDE)
        except ValidationError as error:
            for line in _flatten_errors(error.messages, name):
                key = line.split(":", 1)[0]
                if line.endswith("Missing data for required field."):
                    section_name, _, field_name = key.partition(".")
                    line = f"{key} is required (set it in the config file or {_env_name(section_name, field_name)})"
                problems.append(line)

    problems.extend(_cross_section_problems(loaded))
    if problems:
        raise ConfigError("\n".join(f"config error: {line}" for line in sorted(set(problems))))
    return Settings(**loaded, source=str(path) if path else "environment only")
