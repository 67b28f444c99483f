"""Encryption at rest: AES-256-GCM data keys wrapped by one master key.

* The **master key** (32 random bytes) is the file ``master.key`` in the data directory (mode
  0600), or ``OPENLFR_MASTER_KEY`` (base64). It never enters the database.
* Each watchlist and each deployment has its own **data key** (32 random bytes), stored only
  wrapped: ``nonce ‖ AES-256-GCM(master, nonce, key, aad="openlfr/data-key/<purpose>")``.
* Biometric data is stored as ``nonce ‖ AES-256-GCM(data key, nonce, plaintext, aad)``; the
  associated data binds a ciphertext to its row (e.g. ``b"subject-image:12:template"``), so a
  ciphertext moved to another row does not decrypt.
* **Crypto-shredding**: deleting a data key's row makes everything under it unreadable, even from
  a backup or a copy of the database file. SQLite's ``secure_delete`` and a WAL checkpoint make
  sure the wrapped key does not survive in free pages or the log
  (:meth:`openlfr.store.db.Database.checkpoint`).
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.orm import Session

from openlfr.store.models import DataKey

KEY_BYTES = 32
NONCE_BYTES = 12


class CryptoError(ValueError):
    """A key is missing, malformed, destroyed, or does not fit the ciphertext."""


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
            raise CryptoError("OPENLFR_MASTER_KEY is not valid base64") from None
        if len(key) != KEY_BYTES:
            raise CryptoError(f"OPENLFR_MASTER_KEY must decode to {KEY_BYTES} bytes, "
                              f"not {len(key)}")
        return key
    if not path.exists():
        raise CryptoError(f"{path}: no master key (run `openlfr init`, or set "
                          "OPENLFR_MASTER_KEY)")
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise CryptoError(f"{path}: the master key file is readable by others "
                          f"(mode {mode:o}); run `chmod 600 {path}`")
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise CryptoError(f"{path}: a master key is {KEY_BYTES} bytes, this file has "
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
    """Creates, unwraps and destroys data keys within one database session."""

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != KEY_BYTES:
            raise CryptoError(f"a master key is {KEY_BYTES} bytes")
        self._master = master_key

    @staticmethod
    def _aad(purpose: str) -> bytes:
        return f"openlfr/data-key/{purpose}".encode()

    def new_key(self, session: Session, purpose: str) -> DataKey:
        """A fresh data key, stored wrapped; flushed so it has an id."""
        row = DataKey(purpose=purpose,
                      wrapped=seal(self._master, secrets.token_bytes(KEY_BYTES),
                                   self._aad(purpose)))
        session.add(row)
        session.flush()
        return row

    def unwrap(self, session: Session, key_id: int | None) -> bytes:
        row = session.get(DataKey, key_id) if key_id is not None else None
        if row is None:
            raise CryptoError(f"data key {key_id} does not exist (destroyed?)")
        return open_sealed(self._master, row.wrapped, self._aad(row.purpose))

    def encrypt(self, session: Session, key_id: int | None, plaintext: bytes,
                aad: bytes) -> bytes:
        return seal(self.unwrap(session, key_id), plaintext, aad)

    def decrypt(self, session: Session, key_id: int | None, sealed: bytes, aad: bytes) -> bytes:
        return open_sealed(self.unwrap(session, key_id), sealed, aad)

    @staticmethod
    def destroy(session: Session, key_id: int | None) -> bool:
        """Delete a data key (crypto-shredding). True if there was one."""
        row = session.get(DataKey, key_id) if key_id is not None else None
        if row is None:
            return False
        session.delete(row)
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
