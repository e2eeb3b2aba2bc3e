"""Tenant access keys shaped as AWS issues them: an id of "AKIA" and 16 base32 characters, and
a 40-character secret. The secret is stored as issued: SigV4 needs it to verify a signature."""

import base64
import re
import secrets

KEY_ID_PREFIX = "AKIA"
KEY_ID = re.compile(r"AKIA[A-Z2-7]{16}")
SECRET = re.compile(r"[A-Za-z0-9+/]{40}")
MAX_KEYS_PER_TENANT = 2  # IAM's quota of access keys per user: enough to rotate one


def new_key_id() -> str:
    # 10 random bytes are exactly 16 base32 characters (A-Z, 2-7), with no padding
    return KEY_ID_PREFIX + base64.b32encode(secrets.token_bytes(10)).decode()


def new_secret() -> str:
    # 30 random bytes are exactly 40 base64 characters: 240 bits
    return base64.b64encode(secrets.token_bytes(30)).decode()


def is_key_id(value: object) -> bool:
    return isinstance(value, str) and KEY_ID.fullmatch(value) is not None
