"""Signed checkpoints of the chain head (Ed25519), and the signing key file.

A hash chain alone detects edits, deletions, insertions and reorderings *inside* the chain, but
not a truncated tail (the last entries removed) nor a wholesale rewrite with every hash
recomputed. A checkpoint closes that gap: from time to time the head ``(seq, head_hash)`` is
signed with an Ed25519 key and the checkpoint is kept apart from the database (a file, a
printout, a copy with the oversight body). Verification against it then requires that the chain
reaches ``seq`` and that its entry ``seq`` has exactly ``head_hash``.

What is signed (domain-separated, so the signature cannot be replayed as anything else)::

    b"openlfr-audit-checkpoint-v1\\n" + json.dumps(
        {"seq": seq, "head_hash": head_hash, "time": time, "public_key": public_key},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

``public_key`` and ``signature`` are lowercase hex (32 and 64 bytes). Anyone can check a
checkpoint with any Ed25519 implementation; :meth:`Checkpoint.verify` is one.

A signature only proves *which key* signed: pass the public key you expect (published by the
operator) to :meth:`Checkpoint.verify` / :meth:`Checkpoint.read`, otherwise a forger could sign
a checkpoint of his own with a key of his own.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from openlfr import errors
from openlfr.audit.entry import check_time, format_time, is_hash

CHECKPOINT_FORMAT = "openlfr-audit-checkpoint-v1"
_DOMAIN = (CHECKPOINT_FORMAT + "\n").encode("ascii")
_FIELDS = ("seq", "head_hash", "time", "public_key", "signature")


class CheckpointError(errors.InvalidInput):
    """A checkpoint or key file is missing, corrupt, forged or unsafe."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement "the chain had ``seq`` entries and its head hash was ``head_hash``"."""

    seq: int
    head_hash: str
    time: str
    public_key: str
    signature: str

    def signed_bytes(self) -> bytes:
        """The exact bytes the signature covers (see the module docstring)."""
        payload = {
            "seq": self.seq,
            "head_hash": self.head_hash,
            "time": self.time,
            "public_key": self.public_key,
        }
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return _DOMAIN + text.encode("utf-8")

    def problem(self, expected_public_key: str | None = None) -> str | None:
        """Why this checkpoint is not to be trusted, or ``None`` when it verifies."""
        if type(self.seq) is not int or self.seq < 0:
            return f"checkpoint seq must be a non-negative integer, got {self.seq!r}"
        if not is_hash(self.head_hash):
            return "checkpoint head_hash is not 64 lowercase hex digits"
        try:
            check_time(self.time)
        except ValueError as exc:
            return f"checkpoint {exc}"
        if expected_public_key is not None and (
            not isinstance(self.public_key, str)
            or self.public_key.lower() != expected_public_key.lower()
        ):
            return (
                f"checkpoint was signed with key {self.public_key!r}, not the expected key "
                f"{expected_public_key!r}"
            )
        try:
            key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(self.public_key))
            signature = bytes.fromhex(self.signature)
        except (TypeError, ValueError):
            return "checkpoint public_key or signature is not valid hex of the right length"
        try:
            key.verify(signature, self.signed_bytes())
        except InvalidSignature:
            return "checkpoint signature does not verify: the checkpoint was altered or forged"
        return None

    def verify(self, expected_public_key: str | None = None) -> bool:
        """True when the signature is valid (and made by ``expected_public_key``, if given)."""
        return self.problem(expected_public_key) is None

    def to_dict(self) -> dict[str, Any]:
        return {"format": CHECKPOINT_FORMAT, **asdict(self)}

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write as JSON, atomically (temp file + rename), owner-only (0600)."""
        target = Path(path)
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"
        _atomic_write(target, text.encode("utf-8"))
        return target

    @classmethod
    def read(
        cls, path: str | os.PathLike[str], expected_public_key: str | None = None
    ) -> Checkpoint:
        """Read and verify a checkpoint file; :class:`CheckpointError` if missing/corrupt/forged."""
        source = Path(path)
        try:
            raw = source.read_bytes()
        except FileNotFoundError:
            raise CheckpointError(f"no checkpoint file at {source}") from None
        except OSError as exc:
            raise CheckpointError(f"cannot read checkpoint {source}: {exc}") from None
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"checkpoint {source} is corrupt (not JSON): {exc}") from None
        if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(
                f"checkpoint {source} is corrupt: not an {CHECKPOINT_FORMAT} object"
            )
        missing = [name for name in _FIELDS if name not in data]
        if missing:
            raise CheckpointError(f"checkpoint {source} lacks field(s): {', '.join(missing)}")
        types = {"seq": int, "head_hash": str, "time": str, "public_key": str, "signature": str}
        for name, kind in types.items():
            if type(data[name]) is not kind:
                raise CheckpointError(
                    f"checkpoint {source}: field {name!r} must be {kind.__name__}"
                )
        checkpoint = cls(**{name: data[name] for name in _FIELDS})
        problem = checkpoint.problem(expected_public_key)
        if problem is not None:
            raise CheckpointError(f"checkpoint {source}: {problem}")
        return checkpoint


def sign_checkpoint(
    private_key: Ed25519PrivateKey,
    seq: int,
    head_hash: str,
    time: str | datetime | None = None,
) -> Checkpoint:
    """Sign the head ``(seq, head_hash)``; ``seq`` 0 with GENESIS is the empty chain."""
    if type(seq) is not int or seq < 0:
        raise ValueError(f"seq must be a non-negative integer, got {seq!r}")
    if not is_hash(head_hash):
        raise ValueError(f"head_hash must be 64 lowercase hex digits, got {head_hash!r}")
    if time is None or isinstance(time, datetime):
        stamp = format_time(time)
    else:
        check_time(time)
        stamp = time
    unsigned = Checkpoint(seq, head_hash, stamp, public_key_hex(private_key), "")
    signature = private_key.sign(unsigned.signed_bytes()).hex()
    return Checkpoint(seq, head_hash, stamp, unsigned.public_key, signature)


# --------------------------------------------------------------------------- keys


def generate_signing_key() -> Ed25519PrivateKey:
    """A fresh Ed25519 private key."""
    return Ed25519PrivateKey.generate()


def public_key_hex(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """Raw 32-byte public key as lowercase hex (as checkpoints carry and operators publish)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


def _private_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )


def load_or_create_signing_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Load the raw 32-byte Ed25519 private key at ``path``, or create it (mode 0600).

    An existing key file that group or others may access in any way is refused (as ssh does):
    a signing key others can read lets them forge checkpoints.
    """
    target = Path(path)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = generate_signing_key()
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # created by someone else meanwhile: load theirs
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(_private_bytes(key))
                handle.flush()
                os.fsync(handle.fileno())
            return key
    try:
        info = target.stat()
    except OSError as exc:
        raise CheckpointError(f"cannot read signing key {target}: {exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise CheckpointError(f"signing key {target} is not a regular file")
    mode = stat.S_IMODE(info.st_mode)
    if os.name == "posix" and mode & 0o077:
        raise CheckpointError(
            f"signing key {target} has permissions {mode:04o}, which let other users read it; "
            f"run `chmod 600 {target}` (and consider the key compromised if others did read it)"
        )
    raw = target.read_bytes()
    if len(raw) != 32:
        raise CheckpointError(
            f"signing key {target} is corrupt: {len(raw)} bytes, expected a raw 32-byte "
            "Ed25519 private key"
        )
    return Ed25519PrivateKey.from_private_bytes(raw)


def _atomic_write(target: Path, data: bytes) -> None:
    """Write ``data`` to a 0600 temp file beside ``target``, fsync, then rename over it."""
    directory = target.parent
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    if hasattr(os, "O_DIRECTORY"):
        with contextlib.suppress(OSError):
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
