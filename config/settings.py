"""Settings: environment, `.env`, and an optional TOML config file (LINLI_CONFIG)."""

from __future__ import annotations

import os
import tomllib
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError

DEFAULT_DB_PATH = Path("data") / "linli.sqlite3"


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the file named by LINLI_CONFIG (TOML, keys as the env names in lower or upper case)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("LINLI_CONFIG")
        if not path:
            return {}
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
        return {k.lower(): v for k, v in data.items()}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    bot_token: str = Field(default="", description="Token from @BotFather")
    telegram_api_base: str | None = Field(default=None, description="Another Bot API server, e.g. http://127.0.0.1:8081")
    database_url: str = Field(default=f"sqlite+aiosqlite:///{DEFAULT_DB_PATH}")
    bot_framework: Literal["aiogram", "ptb"] = "aiogram"
    default_locale: Literal["zh", "en"] = "zh"
    timezone: str = "Asia/Shanghai"
    # NoDecode: "11, 22" in the environment is a comma-separated list, not JSON.
    superadmins: Annotated[list[int], NoDecode] = Field(
        default_factory=list, description="Telegram user ids that are secretaries everywhere"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # Telegram's limits, overridable (paid broadcasts; benchmarks).
    send_rate_global: float = Field(default=30.0, gt=0)
    send_rate_per_chat: float = Field(default=1.0, gt=0)
    # To one chat: at most this many in any SEND_BURST_PER_CHAT / SEND_RATE_PER_CHAT seconds (5 in any 5 s).
    send_burst_per_chat: int = Field(default=5, ge=1, le=1000)
    send_rate_per_group: int = Field(default=20, gt=0)

    poll_timeout: int = Field(default=25, ge=0, le=50)
    admin_cache_seconds: int = Field(default=300, ge=0)
    scheduler_sweep_seconds: float = Field(default=30.0, gt=0)
    outbox_lease_seconds: float = Field(default=60.0, gt=0)
    # Demand follow-ups. SLA per category lives in the community; these are global defaults.
    sla_overrides: dict[str, Any] = Field(default_factory=dict)
    # Extra keywords per category for guessing a demand's category, e.g. {"lifts": ["扶梯"]}.
    category_keywords: dict[str, list[str]] = Field(default_factory=dict)
    rating_reask_after: str = "24h"
    # The sandbox (no BOT_TOKEN, or `main.py --sandbox`): its page's address. It has no login, so it
    # listens on loopback unless another address is set here explicitly.
    sandbox_host: str = Field(default="127.0.0.1", min_length=1)
    sandbox_port: int = Field(default=8080, ge=0, le=65535)
    # How many seconds a minute of meeting timing lasts: reminder offsets, the check-in window,
    # a meeting's length and the minutes reminder, all measured from the start. Tests set 1.
    meeting_minute_seconds: float = Field(default=60.0, gt=0, le=60)
    # Volunteer tasks: when claimers are reminded, before the task's time (comma-separated delays).
    task_remind_before: str = "24h,1h"
    # Abuse and privacy: filings (and, separately, /report and @admin) per person in any sliding hour;
    # how long delivered messages, finished timers and abandoned forms are kept.
    filing_limit_per_hour: int = Field(default=5, ge=1, le=1000)
    retention_days: int = Field(default=30, ge=1, le=3650)
    # Consultations: seconds (附议) at which the secretaries are told of a proposal; a community's own
    # value (/proposals threshold <n>) wins.
    proposal_threshold: int = Field(default=10, ge=1, le=10_000)
    # Grids and the street: deadlines at a level a demand was moved to, per level, in SLA_OVERRIDES'
    # format, e.g. {"street": {"*": {"*": {"accept": "48h", "resolve": "30d"}}}}.
    sla_level_overrides: dict[str, Any] = Field(default_factory=dict)
    # Members in the open: points a kept pledge adds to 先锋指数; how long an evaluation's 公示 takes objections.
    pledge_points: int = Field(default=5, ge=0, le=1000)
    evaluation_points: int = Field(default=5, ge=0, le=1000)
    evaluation_publicity_days: int = Field(default=7, ge=1, le=365)
    # The durable inbox: how long handled updates are kept (then pruned).
    inbox_retention: str = "7d"
    # Webhook mode (polling is the default): the public URL Telegram calls, the secret it must send
    # (X-Telegram-Bot-Api-Secret-Token; required, at least 32 characters of A-Z a-z 0-9 _ -), where
    # the listener listens, and how many connections Telegram may open at once.
    webhook_url: str | None = None
    webhook_secret: str | None = Field(default=None, repr=False)
    webhook_listen: str = "127.0.0.1:8081"
    webhook_max_connections: int = Field(default=40, ge=1, le=100)
    # /healthz and /metrics in polling mode (in webhook mode they are on the webhook listener).
    metrics_listen: str | None = None
    # Several instances on one PostgreSQL (docs/instances.md). Telegram's limits are per bot, not per
    # instance: "auto" keeps the send windows in the database on PostgreSQL (every instance sharing
    # it counts in them) and in this process on SQLite; "local" keeps them in this process anyway
    # (one instance on PostgreSQL); "database" insists on the shared ones (PostgreSQL only).
    send_limiter: Literal["auto", "local", "database"] = "auto"
    # A place in a shared send window whose holder vanished (kill -9) stops counting after this long.
    send_slot_stale_seconds: float = Field(default=30.0, gt=0, le=600)
    # Per-chat order across instances: how long an update waits for an earlier one of its chat that
    # another instance holds before this instance handles that one itself (its holder is presumed dead).
    chat_order_wait_seconds: float = Field(default=15.0, gt=0, le=600)

    @field_validator("superadmins", mode="before")
    @classmethod
    def _split_ids(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [int(x) for x in v.replace(";", ",").split(",") if x.strip()]
        if isinstance(v, int):
            return [v]
        return v

    @field_validator("timezone")
    @classmethod
    def _known_tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {v!r}; e.g. Asia/Shanghai") from exc
        return v

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, v: str) -> str:
        # Accept the common sync spellings and pick the async driver.
        if v.startswith("postgres://"):
            v = "postgresql://" + v[len("postgres://") :]
        if v.startswith("postgresql://"):
            v = "postgresql+asyncpg://" + v[len("postgresql://") :]
        if v.startswith("sqlite://") and not v.startswith("sqlite+aiosqlite://"):
            v = "sqlite+aiosqlite://" + v[len("sqlite://") :]
        if not (v.startswith("sqlite+aiosqlite://") or v.startswith("postgresql+asyncpg://")):
            raise ValueError("DATABASE_URL must be sqlite or postgresql, e.g. postgresql://user@host/db")
        return v

    @field_validator("telegram_api_base")
    @classmethod
    def _base(cls, v: str | None) -> str | None:
        if not v:
            return None
        if not v.startswith(("http://", "https://")):
            raise ValueError("TELEGRAM_API_BASE must start with http:// or https://")
        return v.rstrip("/")

    @field_validator("sla_overrides")
    @classmethod
    def _sla(cls, v: dict[str, Any]) -> dict[str, Any]:
        from bot.domain.sla import validate_overrides  # the rules live in the domain

        validate_overrides(v)
        return v

    @field_validator("sla_level_overrides")
    @classmethod
    def _sla_levels(cls, v: dict[str, Any]) -> dict[str, Any]:
        from bot.domain.sla import validate_overrides

        for level, overrides in v.items():
            if level not in ("grid", "community", "street"):
                raise ValueError(f"unknown level {level!r}; use grid, community or street")
            if not isinstance(overrides, dict):
                raise ValueError(f"SLA_LEVEL_OVERRIDES[{level!r}] must be an object of categories")
            validate_overrides(overrides)
        return v

    @field_validator("category_keywords")
    @classmethod
    def _categories(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        from config.categories import CATEGORIES

        unknown = sorted(set(v) - set(CATEGORIES))
        if unknown:
            raise ValueError(f"unknown categories {unknown}; known: {', '.join(CATEGORIES)}")
        return v

    @field_validator("rating_reask_after")
    @classmethod
    def _duration(cls, v: str) -> str:
        parse_duration(v)
        return v

    @field_validator("webhook_listen")
    @classmethod
    def _webhook_listen(cls, v: str) -> str:
        split_listen(v)
        return v

    @field_validator("metrics_listen")
    @classmethod
    def _metrics_listen(cls, v: str | None) -> str | None:
        if not v:
            return None  # off
        split_listen(v)
        return v

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, v: str | None) -> str | None:
        if not v:
            return None
        if not v.startswith(("https://", "http://")):
            raise ValueError("WEBHOOK_URL must be the public https:// URL Telegram calls")
        return v

    @model_validator(mode="after")
    def _webhook_secret(self) -> Settings:
        if self.webhook_url:
            secret = self.webhook_secret or ""
            if len(secret) < 32:
                raise ValueError("webhook mode (WEBHOOK_URL) needs WEBHOOK_SECRET of at least 32 characters")
            if len(secret) > 256 or not all(c.isascii() and (c.isalnum() or c in "_-") for c in secret):
                raise ValueError("WEBHOOK_SECRET may hold only A-Z, a-z, 0-9, _ and - (at most 256 characters)")
        return self

    @model_validator(mode="after")
    def _shared_limits(self) -> Settings:
        if self.send_limiter == "database" and not self.database_url.startswith("postgresql"):
            raise ValueError("SEND_LIMITER=database needs PostgreSQL (DATABASE_URL); use auto or local")
        return self

    @property
    def shared_database(self) -> bool:
        """PostgreSQL: several instances may share it, so what they must agree on lives there."""
        return self.database_url.startswith("postgresql")

    @field_validator("inbox_retention")
    @classmethod
    def _inbox_retention(cls, v: str) -> str:
        parse_duration(v)
        return v

    @field_validator("task_remind_before")
    @classmethod
    def _offsets(cls, v: str) -> str:
        parse_durations(v)
        return v

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, dotenv_settings, _TomlSource(settings_cls), file_secret_settings


def parse_duration(text: str) -> Any:
    """'90s', '30m', '2h', '7d' -> timedelta. Used for settings that name a delay."""
    from datetime import timedelta

    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    text = text.strip().lower()
    if len(text) < 2 or text[-1] not in units:
        raise ValueError(f"bad duration {text!r}; e.g. 30m, 2h, 7d")
    try:
        amount = float(text[:-1])
    except ValueError as exc:
        raise ValueError(f"bad duration {text!r}; e.g. 30m, 2h, 7d") from exc
    if amount <= 0:
        raise ValueError(f"duration must be positive: {text!r}")
    return timedelta(**{units[text[-1]]: amount})


def split_listen(text: str) -> tuple[str, int]:
    """'127.0.0.1:8081' -> ('127.0.0.1', 8081); '[::1]:8081' for IPv6."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"bad address {text!r}; e.g. 127.0.0.1:8081")
    return host.strip("[]"), int(port)


def parse_durations(text: str) -> list[Any]:
    """'24h,1h' -> [24 hours, 1 hour]: several delays, e.g. reminder offsets."""
    parts = [p for p in text.replace("，", ",").split(",") if p.strip()]
    if not parts:
        raise ValueError(f"no durations in {text!r}; e.g. 24h,1h")
    return [parse_duration(p) for p in parts]


class SettingsError(Exception):
    pass


def load_settings(**overrides: Any) -> Settings:
    try:
        return Settings(**overrides)
    except SourceError as exc:  # e.g. a JSON setting that is not JSON
        cause = f" ({exc.__cause__})" if exc.__cause__ else ""
        raise SettingsError(f"invalid configuration: {exc}{cause}") from None
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]).upper() or "settings"
            lines.append(f"{name}: {err['msg']}")
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(lines)) from None
