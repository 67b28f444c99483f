"""Encryption at rest: AES-256-GCM data keys wrapped by one master key.

* The **master key** (32 random bytes) is the file ``master.key`` in the data directory (mode
  0600), or ``OPENLFR_MASTER_KEY`` (base64). It never enters the database.
* Each watchlist and each deployment has its own **data key** (32 random bytes), stored only
  wrapped: ``nonce ‖ AES-256-GCM(master, nonce, key, aad="openlfr/data-key/<purpose>")``, as one
  file of the key store (:mod:`openlfr.store.keystore`, ``keys/<store>/<id>.key`` in the data
  directory). The database keeps only the key's record (``data_keys``: id, purpose, created,
  destroyed), never its material.
* Biometric data is stored as ``nonce ‖ AES-256-GCM(data key, nonce, plaintext, aad)``; the
  associated data binds a ciphertext to its row (e.g. ``b"subject-image:12:template"``), so a
  ciphertext moved to another row does not decrypt.
* **Crypto-shredding**: destroying a data key deletes its file (and ``fsync``s the folder), which
  makes everything under it unreadable, in the database and in any backup of it (a backup of
  the key store itself taken before is another matter: keep those apart, see the README).
  The ciphertext itself is deleted too; on SQLite ``secure_delete`` overwrites it and a checked
  WAL checkpoint removes it from the log (:meth:`openlfr.store.db.Database.checkpoint`).
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from openlfr import errors
from openlfr.store.keystore import KeyStore
from openlfr.store.models import DataKey

KEY_BYTES = 32
NONCE_BYTES = 12


class CryptoError(errors.IntegrityFailure):
    """A data key is missing or destroyed, or does not fit the ciphertext (altered data): an
    integrity failure, never the caller's mistake; the front ends log it and answer without
    detail."""


class MasterKeyError(errors.InvalidInput):
    """The master key the installation was given is missing, malformed or unsafe: a setting
    to fix (the CLI exits 2 naming it), not altered data."""


def create_master_key(path: Path) -> bytes:
    """Write a new random master key to ``path`` (mode 0600); refuse to overwrite one."""
    key = secrets.token_bytes(KEY_BYTES)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


def load_master_key(path: Path, env_value: str | None = None) -> bytes:
    """The master key from ``env_value`` (base64) if given, else from the key file."""
    if env_value:
        try:
            key = base64.b64decode(env_value, validate=True)
        except (binascii.Error, ValueError):
            raise MasterKeyError("OPENLFR_MASTER_KEY is not valid base64") from None
        if len(key) != KEY_BYTES:
            raise MasterKeyError(f"OPENLFR_MASTER_KEY must decode to {KEY_BYTES} bytes, "
                                 f"not {len(key)}")
        return key
    if not path.exists():
        raise MasterKeyError(f"{path}: no master key (run `openlfr init`, or set "
                             "OPENLFR_MASTER_KEY)")
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise MasterKeyError(f"{path}: the master key file is readable by others "
                             f"(mode {mode:o}); run `chmod 600 {path}`")
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise MasterKeyError(f"{path}: a master key is {KEY_BYTES} bytes, this file has "
                             f"{len(key)}")
    return key


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def open_sealed(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    if len(sealed) < NONCE_BYTES + 16:
        raise CryptoError("ciphertext too short")
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
    except InvalidTag:
        raise CryptoError("decryption failed: wrong key or altered data") from None


class Keyring:
    """Creates, unwraps and destroys data keys: records in the database session, material in
    the key store."""

    #: A temporary key file older than this is what a crash in the middle of a write left.
    ABANDONED_AFTER_S = 3600.0

    def __init__(self, master_key: bytes, store: KeyStore) -> None:
        if len(master_key) != KEY_BYTES:
            raise MasterKeyError(f"a master key is {KEY_BYTES} bytes")
        self._master = master_key
        self.store = store

    @staticmethod
    def _aad(purpose: str) -> bytes:
        return f"openlfr/data-key/{purpose}".encode()

    def new_key(self, session: Session, purpose: str) -> DataKey:
        """A fresh data key: its record flushed (so it has an id), its wrapped material
        written to the key store."""
        row = DataKey(purpose=purpose, wrapped=b"")
        session.add(row)
        session.flush()
        self.store.write(row.id, seal(self._master, secrets.token_bytes(KEY_BYTES),
                                      self._aad(purpose)))
        return row

    def unwrap(self, session: Session, key_id: int | None) -> bytes:
        row = session.get(DataKey, key_id) if key_id is not None else None
        if row is None or row.destroyed_at is not None:
            raise CryptoError(f"data key {key_id} does not exist (destroyed?)")
        wrapped = self.store.read(row.id)
        if wrapped is None:
            raise CryptoError(f"data key {key_id}: its file is missing from the key store "
                              f"{self.store.directory}")
        return open_sealed(self._master, wrapped, self._aad(row.purpose))

    def encrypt(self, session: Session, key_id: int | None, plaintext: bytes,
                aad: bytes) -> bytes:
        return seal(self.unwrap(session, key_id), plaintext, aad)

    def decrypt(self, session: Session, key_id: int | None, sealed: bytes, aad: bytes) -> bytes:
        return open_sealed(self.unwrap(session, key_id), sealed, aad)

    def destroy(self, session: Session, key_id: int | None) -> bool:
        """Mark a data key destroyed (crypto-shredding). True if there was a live one.

        Its file is deleted by :meth:`shred` once the transaction has committed: deleted
        before, a rollback would leave a watchlist that is not destroyed and can no longer be
        read. Until then the key still exists; callers report destruction only after
        :meth:`shred` (see :mod:`openlfr.governance.purge`)."""
        row = session.get(DataKey, key_id) if key_id is not None else None
        if row is None or row.destroyed_at is not None:
            return False
        row.destroyed_at = datetime.now(UTC)
        row.wrapped = b""
        session.flush()
        return True

    def derive(self, purpose: str) -> bytes:
        """A key of its own for one purpose, derived (HKDF-SHA256) from the master key: for
        small secrets that belong to no data key (a TOTP secret; the keyed hash of a name
        typed at a failed sign-in). Same master key, same purpose: same key."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None,
                    info=f"openlfr/derived/{purpose}".encode()).derive(self._master)

    def shred(self, session: Session) -> tuple[int, list[int]]:
        """Delete the file of every key recorded as destroyed (and temporary files a crash
        left). Returns (files deleted, ids whose file could not be deleted). Safe to repeat;
        run after the destroying transaction commits.

        A file with no record at all is left alone: only a creation rolled back leaves one,
        a key that never encrypted anything (overwritten if its id comes again)."""
        held = self.store.ids()
        deleted, failed = 0, []
        if held:
            destroyed = set(session.scalars(select(DataKey.id).where(
                DataKey.id.in_(held), DataKey.destroyed_at.is_not(None))))
            for key_id in sorted(destroyed):
                try:
                    deleted += int(self.store.delete(key_id))
                except OSError:
                    failed.append(key_id)
        self.store.remove_stale_temporaries(self.ABANDONED_AFTER_S)
        return deleted, failed

    def move_to_store(self, session: Session) -> int:
        """Move wrapped keys still held in the database (before revision 0006) to the key
        store, then empty the column. Returns how many were moved."""
        rows = session.scalars(select(DataKey).where(func.length(DataKey.wrapped) > 0)).all()
        for row in rows:
            if row.destroyed_at is None and not self.store.exists(row.id):
                self.store.write(row.id, bytes(row.wrapped))
            row.wrapped = b""
        session.flush()
        return len(rows)
