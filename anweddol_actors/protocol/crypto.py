"""The primitives of the wire protocol (PROTOCOL.md §1–2), over ``cryptography``.

RSA is OAEP with MGF1-SHA256 and SHA-256, no label; AES is 256-bit CBC with PKCS7 padding.
Functions here are stateless: per-connection state lives in the connection objects, so one
private key can be shared read-only by every session.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, OAEP
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = [
    "AES_BLOCK_SIZE",
    "AES_KEY_SIZE",
    "DEFAULT_RSA_KEY_SIZE",
    "MAX_RSA_KEY_SIZE",
    "MIN_RSA_KEY_SIZE",
    "RSA_PUBLIC_EXPONENT",
    "aes_cbc_decrypt",
    "aes_cbc_encrypt",
    "generate_private_key",
    "load_private_key",
    "load_public_key",
    "fingerprint",
    "private_pem",
    "public_pem",
    "rsa_block_size",
    "rsa_oaep_decrypt",
    "rsa_oaep_encrypt",
]

DEFAULT_RSA_KEY_SIZE = 4096
RSA_PUBLIC_EXPONENT = 65537
# Below 1024 bits OAEP-SHA256 cannot carry the 48-byte session key; above 16384 a single
# decryption costs seconds, a cheap way for a peer to stall us.
MIN_RSA_KEY_SIZE = 1024
MAX_RSA_KEY_SIZE = 16384
AES_KEY_SIZE = 32  # bytes: AES-256
AES_BLOCK_SIZE = 16  # bytes: also the IV size

_OAEP = OAEP(mgf=MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def generate_private_key(bits: int = DEFAULT_RSA_KEY_SIZE) -> rsa.RSAPrivateKey:
    """A fresh RSA private key with the usual public exponent."""
    return rsa.generate_private_key(public_exponent=RSA_PUBLIC_EXPONENT, key_size=bits)


def _as_bytes(data: bytes | str) -> bytes:
    return data.encode() if isinstance(data, str) else bytes(data)


def load_private_key(pem: bytes | str, password: bytes | None = None) -> rsa.RSAPrivateKey:
    """Load a PEM RSA private key; ValueError if it is not one."""
    try:
        key = serialization.load_pem_private_key(_as_bytes(pem), password=password)
    except (TypeError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"cannot load private key: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"not an RSA private key: {type(key).__name__}")
    return key


def load_public_key(pem: bytes | str) -> rsa.RSAPublicKey:
    """Load a PEM (SubjectPublicKeyInfo) RSA public key; ValueError if it is not one."""
    try:
        key = serialization.load_pem_public_key(_as_bytes(pem))
    except UnsupportedAlgorithm as exc:
        raise ValueError(f"cannot load public key: {exc}") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError(f"not an RSA public key: {type(key).__name__}")
    return key


def public_pem(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> bytes:
    """The PEM SubjectPublicKeyInfo form sent on the wire (steps 3 and 7)."""
    if isinstance(key, rsa.RSAPrivateKey):
        key = key.public_key()
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def fingerprint(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    """SHA-256 of the public key's DER SubjectPublicKeyInfo, as 64 lowercase hex digits.

    What an administrator gives clients to check the key they receive; the same as
    ``openssl pkey -pubin -in public.pem -outform DER | sha256sum``.
    """
    if isinstance(key, rsa.RSAPrivateKey):
        key = key.public_key()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def private_pem(key: rsa.RSAPrivateKey) -> bytes:
    """Unencrypted PKCS8 PEM of a private key."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def rsa_block_size(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> int:
    """Bytes in one RSA ciphertext for this key (512 for 4096 bits)."""
    return (key.key_size + 7) // 8


def rsa_oaep_encrypt(public_key: rsa.RSAPublicKey, data: bytes) -> bytes:
    return public_key.encrypt(data, _OAEP)


def rsa_oaep_decrypt(private_key: rsa.RSAPrivateKey, ciphertext: bytes) -> bytes:
    """ValueError if the block does not decrypt with this key."""
    return private_key.decrypt(ciphertext, _OAEP)


def _check_key_iv(key: bytes, iv: bytes) -> None:
    if len(key) not in (16, 24, 32):
        raise ValueError(f"AES key must be 16, 24 or 32 bytes, not {len(key)}")
    if len(iv) != AES_BLOCK_SIZE:
        raise ValueError(f"AES IV must be {AES_BLOCK_SIZE} bytes, not {len(iv)}")


def aes_cbc_encrypt(key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    """PKCS7-pad then AES-CBC encrypt."""
    _check_key_iv(key, iv)
    padder = padding.PKCS7(AES_BLOCK_SIZE * 8).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return encryptor.update(padded) + encryptor.finalize()


def aes_cbc_decrypt(key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    """AES-CBC decrypt then strip PKCS7; ValueError on a bad length or bad padding."""
    _check_key_iv(key, iv)
    if not ciphertext or len(ciphertext) % AES_BLOCK_SIZE:
        raise ValueError(f"ciphertext length {len(ciphertext)} is not a positive multiple of 16")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(AES_BLOCK_SIZE * 8).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


def random_bytes(n: int) -> bytes:
    """Default randomness source of the connections (overridable for deterministic tests)."""
    return os.urandom(n)
