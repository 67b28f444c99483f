"""A node's keys, their text forms, and data sealed to a node.

A node holds two private keys, made on the node by ``openlfr node enroll`` and never sent
anywhere:

- **Ed25519**, to sign what it publishes and to sign in to the broker: NATS authenticates a
  user by an *nkey*, which is an Ed25519 key in a text form of its own (base32, a prefix byte
  naming its kind, a CRC-16). So the same key is the node's broker identity: the centre turns
  the public half into the ``U...`` nkey of the broker's authorisation file.
- **X25519**, to receive encrypted galleries: :func:`seal` encrypts to a public key with an
  ephemeral X25519 key, HKDF-SHA256 and AES-256-GCM (the shape of an ECIES "sealed box"), so
  what the broker holds is unreadable without the node's private key.

The public halves travel as URL-safe base64 of their 32 raw bytes.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from openlfr.errors import IntegrityFailure, InvalidInput

# -- nkeys -------------------------------------------------------------------------------------
# The nkey text form (github.com/nats-io/nkeys): base32 without padding of a prefix byte, the
# 32 raw bytes and a CRC-16 (XMODEM, little-endian). A seed carries two prefix bytes: the seed
# marker and the kind of key it makes.

PREFIX_SEED = 18 << 3  # "S"
PREFIX_USER = 20 << 3  # "U"
PREFIX_ACCOUNT = 0  # "A"
PREFIX_OPERATOR = 14 << 3  # "O"
PREFIX_SERVER = 13 << 3  # "N"


def _crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def _encode(prefix: bytes, raw: bytes) -> str:
    body = prefix + raw
    return base64.b32encode(body + _crc16(body).to_bytes(2, "little")).decode().rstrip("=")


def _decode(text: str) -> bytes:
    text = text.strip()
    try:
        data = base64.b32decode(text + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError):
        raise InvalidInput("not an nkey (base32 expected)", field="nkey") from None
    body, crc = data[:-2], data[-2:]
    if len(data) < 3 or _crc16(body).to_bytes(2, "little") != crc:
        raise InvalidInput("not an nkey (its checksum is wrong)", field="nkey")
    return body


def public_nkey(raw: bytes, prefix: int = PREFIX_USER) -> str:
    """The nkey of an Ed25519 public key (``U...`` for a user)."""
    if len(raw) != 32:
        raise InvalidInput("an Ed25519 public key has 32 bytes", field="nkey")
    return _encode(bytes([prefix]), raw)


def seed_nkey(private: Ed25519PrivateKey, prefix: int = PREFIX_USER) -> str:
    """The nkey seed (``SU...`` for a user) of an Ed25519 private key: what a NATS client
    signs in with."""
    raw = private.private_bytes_raw()
    return _encode(bytes([PREFIX_SEED | (prefix >> 5), (prefix & 31) << 3]), raw)


def nkey_public_raw(nkey: str, prefix: int = PREFIX_USER) -> bytes:
    """The 32 raw bytes of a public nkey of the kind ``prefix``."""
    body = _decode(nkey)
    if len(body) != 33 or body[0] != prefix:
        raise InvalidInput("not a user nkey", field="nkey")
    return body[1:]


def private_from_seed(seed: str) -> Ed25519PrivateKey:
    """The Ed25519 private key of an nkey seed."""
    body = _decode(seed)
    if len(body) != 34 or body[0] & 0xF8 != PREFIX_SEED:
        raise InvalidInput("not an nkey seed", field="seed")
    return Ed25519PrivateKey.from_private_bytes(body[2:])


# -- public keys as text -----------------------------------------------------------------------

def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def unb64(text: str, field: str, size: int = 32) -> bytes:
    """``size`` raw bytes from URL-safe base64 (padding optional); :class:`InvalidInput`
    naming ``field`` otherwise."""
    if not isinstance(text, str) or len(text) > 200:
        raise InvalidInput(f"{field} must be base64 text of {size} bytes", field=field)
    try:
        raw = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{field} is not base64", field=field) from None
    if len(raw) != size:
        raise InvalidInput(f"{field} must be {size} bytes (got {len(raw)})", field=field)
    return raw


def _raw_public(key: Ed25519PublicKey | X25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


# -- the node's key pair -----------------------------------------------------------------------

KEY_FILENAME = "node.key"


@dataclass(frozen=True)
class NodeKeys:
    """A node's two private keys."""

    signing: Ed25519PrivateKey
    box: X25519PrivateKey

    @classmethod
    def generate(cls) -> NodeKeys:
        return cls(Ed25519PrivateKey.generate(), X25519PrivateKey.generate())

    @property
    def signing_public(self) -> bytes:
        return _raw_public(self.signing.public_key())

    @property
    def box_public(self) -> bytes:
        return _raw_public(self.box.public_key())

    @property
    def nkey(self) -> str:
        """The node's broker identity (a user nkey, ``U...``)."""
        return public_nkey(self.signing_public)

    @property
    def seed(self) -> str:
        """What the node signs in to the broker with (never leaves the node)."""
        return seed_nkey(self.signing)

    def save(self, folder: Path) -> Path:
        """Write both keys to ``folder/node.key`` (folder 0700, file 0600, created so from the
        start); refuse to replace keys already there."""
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(folder, 0o700)
        path = folder / KEY_FILENAME
        text = (f"signing {b64(self.signing.private_bytes_raw())}\n"
                f"box {b64(self.box.private_bytes_raw())}\n")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise InvalidInput(f"{path} exists: this node has keys already (enrolled before?)",
                               field="data_dir") from None
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    @classmethod
    def load(cls, folder: Path) -> NodeKeys:
        path = folder / KEY_FILENAME
        try:
            lines = dict(line.split(" ", 1) for line in path.read_text().split("\n") if line)
            return cls(
                Ed25519PrivateKey.from_private_bytes(unb64(lines["signing"], "signing key")),
                X25519PrivateKey.from_private_bytes(unb64(lines["box"], "box key")))
        except FileNotFoundError:
            raise InvalidInput(f"no node keys in {folder}: run openlfr node enroll first",
                               field="data_dir") from None
        except (KeyError, ValueError):
            raise IntegrityFailure(f"{path} is not a node key file") from None


# -- sealed to a node ---------------------------------------------------------------------------

SEAL_MAGIC = b"OLFRSEAL1"
_INFO = b"openlfr sealed to a node v1"


def _seal_key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=_INFO + ephemeral + recipient).derive(shared)


def seal(data: bytes, recipient: bytes, aad: bytes = b"") -> bytes:
    """``data`` encrypted to the X25519 public key ``recipient`` (32 raw bytes): only its
    private key opens it. ``aad`` (e.g. the object's name) is bound to it, not hidden."""
    ephemeral = X25519PrivateKey.generate()
    epk = _raw_public(ephemeral.public_key())
    key = _seal_key(ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient)), epk,
                    recipient)
    nonce = os.urandom(12)
    return SEAL_MAGIC + epk + nonce + AESGCM(key).encrypt(nonce, data, aad)


def open_sealed(blob: bytes, private: X25519PrivateKey, aad: bytes = b"") -> bytes:
    """What :func:`seal` sealed to ``private``'s public key; :class:`IntegrityFailure` when it
    was altered, sealed to another key or bound to another ``aad``."""
    head = len(SEAL_MAGIC)
    if not blob.startswith(SEAL_MAGIC) or len(blob) < head + 32 + 12 + 16:
        raise IntegrityFailure("not data sealed to a node")
    epk, nonce, ct = blob[head:head + 32], blob[head + 32:head + 44], blob[head + 44:]
    mine = _raw_public(private.public_key())
    key = _seal_key(private.exchange(X25519PublicKey.from_public_bytes(epk)), epk, mine)
    try:
        return AESGCM(key).decrypt(nonce, ct, aad)
    except InvalidTag:
        raise IntegrityFailure("sealed data altered, or sealed to another node") from None


# -- the centre's box key ----------------------------------------------------------------------

def load_or_create_box(path: Path) -> X25519PrivateKey:
    """The centre's X25519 key (nodes seal alert crops to its public half): read from
    ``path``, or made there (mode 0600, never replaced) on first use."""
    try:
        return X25519PrivateKey.from_private_bytes(unb64(path.read_text().strip(), "box key"))
    except FileNotFoundError:
        pass
    except InvalidInput:
        raise IntegrityFailure(f"{path} is not a box key file") from None
    key = X25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # made meanwhile by another process
        return load_or_create_box(path)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(b64(key.private_bytes_raw()) + "\n")
    return key


def box_public(key: X25519PrivateKey) -> bytes:
    """The 32 raw bytes of an X25519 key's public half."""
    return _raw_public(key.public_key())
