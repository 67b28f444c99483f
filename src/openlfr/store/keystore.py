"""The key store: one file per data key, outside the database.

Each data key (:mod:`openlfr.store.crypto`) is kept, wrapped by the master key, as the file
``keys/<store>/<id>.key`` of the data directory (the folders mode 0700, each file 0600), where
``<store>`` is a random name the database holds (table ``installation``): two databases pointed
at the same data directory never share a key file. A file is
written atomically (a temporary file, ``fsync``, rename, ``fsync`` of the directory) and never
changed afterwards. Destroying a key overwrites its file with zeros, ``fsync``s it, deletes it
and ``fsync``s the directory, so that once :meth:`KeyStore.delete` returns the key is gone from
the data directory even across a power cut.

Why files and not rows: a row deleted from a database survives in its backups, its write-ahead
log, PostgreSQL's dead tuples and SQLite's free pages; a backup of the database taken before a
watchlist's destruction, together with the master key, would still decrypt it. With the keys in
files, the database holds only ciphertext, and destroying a watchlist deletes the one file that
could open it. (The zero overwrite before the deletion is best effort: on SSDs and copy-on-write
file systems the old blocks may survive at the device level.)
"""

from __future__ import annotations

import os
import re
import secrets
import time
from pathlib import Path

from openlfr import errors

KEYS_DIRNAME = "keys"
_NAME = re.compile(r"^(\d+)\.key$")


class KeyStoreError(errors.IntegrityFailure, OSError):
    """The key store cannot be used (permissions, missing directory, I/O error)."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class KeyStore:
    """The folder of wrapped data keys (``<data dir>/keys``)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    @classmethod
    def in_data_dir(cls, data_dir: Path, name: str) -> KeyStore:
        if not re.fullmatch(r"[0-9a-f]{8,40}", name):
            raise KeyStoreError(f"{name!r} is not a key store name")
        return cls(Path(data_dir) / KEYS_DIRNAME / name)

    def ensure(self) -> None:
        """Create the folder and its parent ``keys`` (mode 0700) if needed, and make them
        private if they are not."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for folder in (self.directory.parent, self.directory):
            if folder.stat().st_mode & 0o077:
                os.chmod(folder, 0o700)

    def path(self, key_id: int) -> Path:
        return self.directory / f"{int(key_id)}.key"

    def write(self, key_id: int, wrapped: bytes) -> None:
        """Store a wrapped key atomically and durably (replacing a file of the same id, which
        only a creation rolled back before could have left)."""
        self.ensure()
        final = self.path(key_id)
        tmp = self.directory / f".{int(key_id)}.{secrets.token_hex(6)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(wrapped)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(self.directory)

    def read(self, key_id: int) -> bytes | None:
        """The wrapped key, or None if there is no file for it."""
        try:
            return self.path(key_id).read_bytes()
        except FileNotFoundError:
            return None

    def exists(self, key_id: int) -> bool:
        return self.path(key_id).exists()

    def delete(self, key_id: int) -> bool:
        """Destroy a key's file: overwrite with zeros, fsync, unlink, fsync the directory.
        True if there was a file. Raises :class:`OSError` if it cannot be deleted."""
        path = self.path(key_id)
        try:
            fd = os.open(path, os.O_WRONLY)
        except FileNotFoundError:
            return False
        try:
            size = os.fstat(fd).st_size
            os.write(fd, b"\0" * size)
            os.fsync(fd)
        finally:
            os.close(fd)
        path.unlink()
        _fsync_dir(self.directory)
        return True

    def ids(self) -> list[int]:
        """The ids of the keys held, in order."""
        if not self.directory.is_dir():
            return []
        found = (_NAME.match(p.name) for p in self.directory.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def remove_stale_temporaries(self, older_than: float = 3600.0) -> int:
        """Delete temporary files a crash left behind (they may hold a wrapped key)."""
        if not self.directory.is_dir():
            return 0
        n = 0
        for p in self.directory.iterdir():
            if p.name.startswith(".") and p.name.endswith(".tmp"):
                try:
                    if time.time() - p.stat().st_mtime > older_than:
                        p.unlink()
                        n += 1
                except FileNotFoundError:
                    continue
        if n:
            _fsync_dir(self.directory)
        return n
