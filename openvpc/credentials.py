"""Secrets of the control channels: node and operator secrets, their files, hashes and checks.

A secret is 32 random bytes written as hex in a root-only file. The store keeps only a node
secret's SHA-256 (the secret is random, so no salt is needed); checks compare in constant time.
"""

import hashlib
import hmac
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from openvpc.jsonfile import PRIVATE, write_text_atomic

SECRET_BYTES = 32
MAX_FILE = 4096
# grpc metadata keys (lower case) carrying a caller's credential
NODE_KEY = "openvpc-node"
SECRET_KEY = "openvpc-secret"
OPERATOR_KEY = "openvpc-operator"

Role = Literal["node", "operator"]


class CredentialError(ValueError):
    """A secret file is missing, unreadable, readable by others, or not a secret."""


@dataclass(frozen=True, slots=True, repr=False)
class Credential:
    """Who calls: a node (with its name) or the operator, and the secret proving it."""

    role: Role
    secret: bytes
    node: str = ""

    def metadata(self) -> tuple[tuple[str, str], ...]:
        if self.role == "operator":
            return ((OPERATOR_KEY, self.secret.hex()),)
        return ((NODE_KEY, self.node), (SECRET_KEY, self.secret.hex()))

    def __repr__(self) -> str:  # never print the secret
        return f"Credential({self.role}, {self.node!r})"


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def secret_hash(secret: bytes) -> str:
    return hashlib.sha256(secret).hexdigest()


def matches(secret: bytes, expected_hash: str) -> bool:
    """Whether `secret` hashes to `expected_hash`, in constant time."""
    return hmac.compare_digest(secret_hash(secret), expected_hash)


def same_secret(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def parse_secret(text: str | None) -> bytes | None:
    """A secret from its hex form; None for anything else (missing, wrong length, not hex)."""
    if text is None or len(text) != 2 * SECRET_BYTES:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


def write_secret_file(path: Path, secret: bytes) -> None:
    """Write `secret` (hex) to a new root-only file through a rename."""
    write_text_atomic(path, secret.hex() + "\n", PRIVATE)


def read_secret_file(path: str | Path) -> bytes:
    """The secret in `path`; refused if the file is not a regular file private to its owner."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as e:
        raise CredentialError(f"secret file {path}: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise CredentialError(f"secret file {path} is not a regular file")
        if st.st_mode & 0o077:
            raise CredentialError(
                f"secret file {path} is accessible to others (mode {st.st_mode & 0o777:o}): "
                "make it 0600"
            )
        raw = f.read(MAX_FILE + 1)
    try:
        secret = parse_secret(raw.decode("ascii").strip())
    except UnicodeDecodeError:
        secret = None
    if secret is None:
        raise CredentialError(f"secret file {path} does not hold {SECRET_BYTES} bytes in hex")
    return secret
