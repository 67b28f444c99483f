"""One settings object for the whole program; every field can be set by an ``OPENLFR_*``
environment variable (``OPENLFR_DATA_DIR``, ``OPENLFR_DATABASE_URL``, ...)."""

from __future__ import annotations

import os
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DB_FILENAME = "openlfr.db"
MASTER_KEY_FILENAME = "master.key"
SIGNING_KEY_FILENAME = "audit-signing.key"


def default_data_dir() -> Path:
    """The per-user data folder: ``$XDG_DATA_HOME/openlfr`` or ``~/.local/share/openlfr``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "openlfr"


def zone_named(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (``Europe/London``, ``UTC``); :class:`ValueError` saying
    so when there is no such zone."""
    name = name.strip()
    try:
        if not name or name.startswith(("/", ".")) or ".." in name:
            raise ValueError
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"{name!r} is not a known IANA time zone (e.g. UTC, Europe/London, "
                         "America/New_York)") from None


class Settings(BaseSettings):
    """Where the data lives and the rules that are configurable."""

    model_config = SettingsConfigDict(env_prefix="OPENLFR_", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir,
                           description="Folder of the embedded database and the key files.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of a PostgreSQL database; default SQLite in the data dir.")
    master_key: str | None = Field(
        default=None,
        description="The master key, 32 bytes as base64 (instead of the key file).")
    retention_days: int = Field(default=31, ge=1,
                                description="Days an alert is kept unless held.")
    watchlist_max_subjects: int = Field(default=5000, ge=1,
                                        description="Largest watchlist allowed.")
    watchlist_destroy_hours: int = Field(
        default=24, ge=0, le=24,
        description="Hours after a deployment's end within which its watchlists are destroyed.")
    consultation_after_days: int = Field(
        default=30, ge=1,
        description="A deployment planned for longer than this many days needs a public "
                    "consultation before it can be authorised.")

    time_zone: str = Field(
        default="UTC", max_length=100,
        description="The IANA time zone (e.g. Europe/London) in which the console and the "
                    "public pages show times, labelled with it, and console forms take them; "
                    "times are stored in UTC.")

    # -- what the public pages tell residents (README "Public pages") --
    responsible_body: str = Field(
        default="the police force that runs this system (the data controller)",
        max_length=300,
        description="Who is responsible for the deployments, as the public pages name it.")
    complaints_contact: str | None = Field(
        default=None, max_length=300,
        description="Where residents send a complaint: an e-mail address, a phone number or "
                    "a postal address (shown as written).")
    complaints_url: str | None = Field(
        default=None, max_length=500,
        description="A web page of the responsible body on how to complain (https://...).")
    regulator: str = Field(
        default="the Information Commissioner's Office (ICO, ico.org.uk/make-a-complaint)",
        max_length=300,
        description="The independent regulator residents may complain to.")
    regulator_url: str | None = Field(
        default=None, max_length=500,
        description="The regulator's page for complaints (https://...), shown as a link; "
                    "none by default, so the public pages link to no other site.")
    impact_assessments_url: str | None = Field(
        default=None, max_length=500,
        description="Where the published impact assessments can be read (https://...); "
                    "otherwise residents are told to ask for them by their reference.")

    # -- sites and nodes over NATS JetStream (README "Sites and nodes"); none is needed on a
    # single machine --
    nats_url: str | None = Field(
        default=None, max_length=500,
        description="The NATS broker the centre uses to reach its nodes (nats://host:4222 or "
                    "tls://...); none: no nodes (everything runs in this process).")
    nats_node_url: str | None = Field(
        default=None, max_length=500,
        description="The broker's address as nodes reach it (told to a node when it "
                    "enrolls); default: nats_url.")
    nats_seed_file: Path | None = Field(
        default=None,
        description="The centre's broker key (an nkey seed), made on first use; default "
                    "nats-centre.nk in the data dir.")
    nats_auth_file: Path | None = Field(
        default=None,
        description="The file of broker users the centre writes and the broker's "
                    "configuration includes; default nats-auth.conf in the data dir.")
    nats_pid_file: Path | None = Field(
        default=None,
        description="The broker's pid_file: the centre makes the broker reload its users "
                    "(SIGHUP) after enrolling or disabling a node.")
    nats_ca_file: Path | None = Field(
        default=None,
        description="A CA certificate file to check the broker's TLS certificate against.")

    @field_validator("complaints_url", "regulator_url", "impact_assessments_url")
    @classmethod
    def _web_address(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if not value.lower().startswith(("https://", "http://")) or any(
                c.isspace() or c in "<>\"'" for c in value):
            raise ValueError(f"{value!r} is not a web address (https://...)")
        return value

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return str(zone_named(value).key)

    @property
    def zone(self) -> ZoneInfo:
        """The zone of :attr:`time_zone`."""
        return ZoneInfo(self.time_zone)

    @field_validator("data_dir", mode="before")
    @classmethod
    def _expand(cls, value: object) -> object:
        if isinstance(value, str | Path):
            return Path(value).expanduser()
        return value

    @property
    def url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / DB_FILENAME}"

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    @property
    def master_key_path(self) -> Path:
        return self.data_dir / MASTER_KEY_FILENAME

    @property
    def signing_key_path(self) -> Path:
        return self.data_dir / SIGNING_KEY_FILENAME

    @property
    def nats_seed_path(self) -> Path:
        return self.nats_seed_file or self.data_dir / "nats-centre.nk"

    @property
    def nats_auth_path(self) -> Path:
        return self.nats_auth_file or self.data_dir / "nats-auth.conf"

    @property
    def nats_box_path(self) -> Path:
        """The centre's X25519 key that nodes seal alert crops to: beside its broker key
        (``nats-centre.box`` by default), made on first use, mode 0600."""
        return self.nats_seed_path.with_suffix(".box")


def load_settings(data_dir: Path | None = None) -> Settings:
    """The settings from the environment, with ``--data-dir`` taking precedence."""
    if data_dir is not None:
        return Settings(data_dir=data_dir)
    return Settings()
