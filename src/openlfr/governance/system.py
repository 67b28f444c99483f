"""An opened openlfr installation: settings, database and keyring, and how it is set up."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from openlfr.audit import load_or_create_signing_key
from openlfr.audit import log as audit_log
from openlfr.config import Settings
from openlfr.store.crypto import Keyring, create_master_key, load_master_key
from openlfr.store.db import Database, StoreError
from openlfr.store.keystore import KEYS_DIRNAME, KeyStore
from openlfr.store.models import DataKey, Installation


@dataclass
class System:
    settings: Settings
    db: Database
    keyring: Keyring

    def close(self) -> None:
        self.db.dispose()


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _seal_camera_sources(db: Database, keyring: Keyring) -> list[int]:
    """Encrypt camera sources a database from before encryption keeps in plaintext."""
    from openlfr.governance.deployments import seal_sources

    return seal_sources(db, keyring)


def _key_store_name(db: Database) -> str:
    """This database's folder in the key store, named on first use. Part of setting up, like
    the schema itself: not an audited change (a fresh installation's log starts with its
    first user)."""
    with db.reading() as s:
        name = s.scalars(select(Installation.key_store).order_by(Installation.id)).first()
    if name is not None:
        return name
    with db.session() as s:
        name = s.scalars(select(Installation.key_store).order_by(Installation.id)).first()
        if name is None:  # another process may have just named it
            name = secrets.token_hex(8)
            s.add(Installation(key_store=name))
    return name


def _keyring(settings: Settings, db: Database) -> Keyring:
    store = KeyStore.in_data_dir(settings.data_dir, _key_store_name(db))
    store.ensure()
    return Keyring(load_master_key(settings.master_key_path, settings.master_key), store)


def _move_keys(db: Database, keyring: Keyring) -> int:
    """Move wrapped data keys a database from before revision 0006 still holds to the key
    store (audited ``keys.move``, a count), then make sure no copy of them is left in SQLite's
    log. Returns how many were moved; costs one query when there is nothing to move."""
    with db.reading() as s:
        if not s.scalar(select(func.count()).select_from(DataKey)
                        .where(func.length(DataKey.wrapped) > 0)):
            return 0
    with db.session() as s:
        moved = keyring.move_to_store(s)
        audit_log.record(s, audit_log.SYSTEM, "keys.move", "data_keys", "all",
                         {"keys": moved, "to": "key store"})
    db.checkpoint()
    return moved


def open_system(settings: Settings) -> System:
    """Open an initialised installation (refuses one that is not)."""
    if settings.is_sqlite and not (settings.data_dir / "openlfr.db").exists():
        raise StoreError(f"{settings.data_dir}: no openlfr database here; run `openlfr init "
                         f"--data-dir {settings.data_dir}` first")
    db = Database(settings.url)
    try:
        db.check()
        keyring = _keyring(settings, db)
        _move_keys(db, keyring)
        _seal_camera_sources(db, keyring)
    except Exception:
        db.dispose()
        raise
    return System(settings, db, keyring)


def initialise(settings: Settings) -> tuple[System, list[str]]:
    """Create what is missing: the data directory (0700), the master key (0600), the audit
    signing key (0600), the key store (0700) and the database schema (or its migration, which
    moves data keys still in the database to the key store). Returns what was done."""
    done: list[str] = []
    if not settings.data_dir.exists():
        done.append(f"created the data directory {settings.data_dir}")
    _private_dir(settings.data_dir)
    if not settings.master_key and not settings.master_key_path.exists():
        create_master_key(settings.master_key_path)
        done.append(f"created the master key {settings.master_key_path} (keep a copy "
                    "somewhere safe: without it no watchlist or alert can be read)")
    if not settings.signing_key_path.exists():
        load_or_create_signing_key(settings.signing_key_path)
        done.append(f"created the audit checkpoint signing key {settings.signing_key_path}")
    db = Database(settings.url)
    try:
        before = db.revision()
        db.upgrade()
        after = db.revision()
        if before != after:
            done.append(f"database schema {before or 'empty'} → {after}")
        existed = (settings.data_dir / KEYS_DIRNAME).exists()
        keyring = _keyring(settings, db)
        if not existed:
            done.append(f"created the key store {keyring.store.directory} (one file per data "
                        "key; back it up apart from the database, see the README on backups)")
        moved = _move_keys(db, keyring)
        if moved:
            done.append(f"moved {moved} data key(s) from the database to the key store "
                        f"{keyring.store.directory}")
        sealed = _seal_camera_sources(db, keyring)
        if sealed:
            done.append(f"encrypted the camera sources of {len(sealed)} deployment(s)")
    except Exception:
        db.dispose()
        raise
    return System(settings, db, keyring), done
