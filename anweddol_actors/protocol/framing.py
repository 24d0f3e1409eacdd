"""Encoding and parsing of the wire units shared by both sides (PROTOCOL.md §1–2).

Parsers raise ``ValueError`` with a message naming what was wrong; the connections turn it
into a :class:`~anweddol_actors.protocol.errors.RemoteProtocolError`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from anweddol_actors.protocol import crypto

__all__ = [
    "ACCEPT",
    "KEY_LENGTH_FIELD_SIZE",
    "LENGTH_FRAME_SIZE",
    "REFUSE",
    "SESSION_SECRET_SIZE",
    "decode_json",
    "decrypt_body",
    "encode_key_length",
    "encrypt_message",
    "parse_key_length",
    "parse_length_frame",
    "parse_public_key",
]

ACCEPT = b"1"
REFUSE = b"0"
KEY_LENGTH_FIELD_SIZE = 8
LENGTH_FRAME_SIZE = crypto.AES_BLOCK_SIZE
# aes_key (32) ‖ iv (16), step 9
SESSION_SECRET_SIZE = crypto.AES_KEY_SIZE + crypto.AES_BLOCK_SIZE
# A 15-digit decimal plus PKCS7 padding is exactly one block.
_MAX_LENGTH_DIGITS = 15

_KEY_LENGTH_RE = re.compile(rb"([0-9]+)=*")
_LENGTH_RE = re.compile(rb"[0-9]{1,15}")


def encode_key_length(length: int) -> bytes:
    """``800`` -> ``b"800====="`` (steps 1 and 5)."""
    text = str(length).encode()
    if length <= 0 or len(text) > KEY_LENGTH_FIELD_SIZE:
        raise ValueError(f"key length {length} does not fit the 8-byte field")
    return text.ljust(KEY_LENGTH_FIELD_SIZE, b"=")


def parse_key_length(field: bytes, max_length: int) -> int:
    """The value of an 8-byte key-length field: digits, then ``=`` padding."""
    match = _KEY_LENGTH_RE.fullmatch(field)
    value = int(match.group(1)) if match else 0
    if value <= 0:
        raise ValueError(f"key length field is not a positive integer: {field!r}")
    if value > max_length:
        raise ValueError(f"key length {value} exceeds the maximum of {max_length} bytes")
    return value


def parse_public_key(pem: bytes) -> rsa.RSAPublicKey:
    """A peer's PEM public key, which must be RSA of an acceptable size."""
    try:
        key = crypto.load_public_key(pem)
    except ValueError as exc:
        raise ValueError(
            f"public key does not load as a PEM RSA key ({exc}): {pem[:40]!r}"
        ) from None
    if not crypto.MIN_RSA_KEY_SIZE <= key.key_size <= crypto.MAX_RSA_KEY_SIZE:
        raise ValueError(
            f"RSA key of {key.key_size} bits is outside "
            f"{crypto.MIN_RSA_KEY_SIZE}..{crypto.MAX_RSA_KEY_SIZE}"
        )
    return key


def encrypt_message(key: bytes, iv: bytes, payload: Any, next_iv: bytes) -> tuple[bytes, bytes]:
    """``(length_frame, body ‖ next_iv)`` for one message; both encrypted from ``iv``.

    TypeError/ValueError if the payload is not JSON-serializable.
    """
    body = crypto.aes_cbc_encrypt(key, iv, json.dumps(payload).encode())
    announced = str(len(body) + len(next_iv)).encode()
    if len(announced) > _MAX_LENGTH_DIGITS:
        raise ValueError(f"message of {len(body)} bytes is too long for a length frame")
    return crypto.aes_cbc_encrypt(key, iv, announced), body + next_iv


def parse_length_frame(key: bytes, iv: bytes, frame: bytes, max_size: int) -> int:
    """The length a 16-byte frame announces: body plus next IV, at most ``max_size``."""
    try:
        plain = crypto.aes_cbc_decrypt(key, iv, frame)
    except ValueError:
        raise ValueError("length frame does not decrypt (wrong AES key or IV?)") from None
    if not _LENGTH_RE.fullmatch(plain):
        raise ValueError(f"length frame is not a decimal of at most 15 digits: {plain!r}")
    length = int(plain)
    body = length - crypto.AES_BLOCK_SIZE
    if body <= 0 or body % crypto.AES_BLOCK_SIZE:
        raise ValueError(f"announced length {length} is not 16 + a positive multiple of 16")
    if length > max_size:
        raise ValueError(f"announced length {length} exceeds the maximum of {max_size} bytes")
    return length


def decrypt_body(key: bytes, iv: bytes, data: bytes) -> tuple[bytes, bytes]:
    """``(plaintext, next_iv)`` of a received ``body ‖ next_iv``."""
    body, next_iv = data[: -crypto.AES_BLOCK_SIZE], data[-crypto.AES_BLOCK_SIZE :]
    try:
        return crypto.aes_cbc_decrypt(key, iv, body), next_iv
    except ValueError:
        raise ValueError(f"message body of {len(body)} bytes does not decrypt") from None


def decode_json(plain: bytes) -> tuple[Any, str | None]:
    """``(value, None)``, or ``(None, reason)`` when the text is not UTF-8 JSON."""
    try:
        text = plain.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"message is not valid UTF-8: {exc}"
    try:
        return json.loads(text), None
    except ValueError as exc:
        return None, f"invalid JSON: {exc}"
    except RecursionError:
        return None, "invalid JSON: nested too deeply"
