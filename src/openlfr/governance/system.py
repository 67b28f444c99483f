"""An opened openlfr installation: settings, database and keyring, and how it is set up."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from openlfr.audit import load_or_create_signing_key
from openlfr.config import Settings
from openlfr.store.crypto import Keyring, create_master_key, load_master_key
from openlfr.store.db import Database, StoreError


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


def open_system(settings: Settings) -> System:
    """Open an initialised installation (refuses one that is not)."""
    if settings.is_sqlite and not (settings.data_dir / "openlfr.db").exists():
        raise StoreError(f"{settings.data_dir}: no openlfr database here; run `openlfr init "
                         f"--data-dir {settings.data_dir}` first")
    db = Database(settings.url)
    try:
        db.check()
        keyring = Keyring(load_master_key(settings.master_key_path, settings.master_key))
        _seal_camera_sources(db, keyring)
    except Exception:
        db.dispose()
        raise
    return System(settings, db, keyring)


def initialise(settings: Settings) -> tuple[System, list[str]]:
    """Create what is missing: the data directory (0700), the master key (0600), the audit
    signing key (0600) and the database schema (or its migration). Returns what was done."""
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
        keyring = Keyring(load_master_key(settings.master_key_path, settings.master_key))
        sealed = _seal_camera_sources(db, keyring)
        if sealed:
            done.append(f"encrypted the camera sources of {len(sealed)} deployment(s)")
    except Exception:
        db.dispose()
        raise
    return System(settings, db, keyring), done
