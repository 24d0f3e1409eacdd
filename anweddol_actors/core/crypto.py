"""Seed-compatible RSA and AES façades (reference/api/crypto.md).

Thin wrappers over :mod:`anweddol_actors.protocol.crypto`, kept for code written against the
original ``anwdlserver.core.crypto``. New code should use the protocol module directly.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import padding as _sym_padding
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from anweddol_actors.protocol import crypto as _crypto

__all__ = [
    "DEFAULT_AES_KEY_SIZE",
    "DEFAULT_DERIVATE_PUBLIC_KEY",
    "DEFAULT_GENERATE_KEY_PAIR",
    "DEFAULT_PEM_FORMAT",
    "DEFAULT_RSA_EXPONENT",
    "DEFAULT_RSA_KEY_SIZE",
    "AESWrapper",
    "RSAWrapper",
]

DEFAULT_RSA_EXPONENT = 65537
DEFAULT_RSA_KEY_SIZE = 4096
DEFAULT_AES_KEY_SIZE = 256
DEFAULT_PEM_FORMAT = True
DEFAULT_GENERATE_KEY_PAIR = True
DEFAULT_DERIVATE_PUBLIC_KEY = False

_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH)


def _encode(data: str | bytes) -> bytes:
    return data.encode() if isinstance(data, str) else bytes(data)


class RSAWrapper:
    """An RSA key pair plus, as in the original, a remote public key.

    ``private_key``, ``public_key`` and ``remote_public_key`` are the ``cryptography`` key
    objects (or None). ``pem_format=False`` getters return those objects, as the original did.
    """

    def __init__(
        self,
        generate_key_pair: bool = DEFAULT_GENERATE_KEY_PAIR,
        key_size: int = DEFAULT_RSA_KEY_SIZE,
        public_exponent: int = DEFAULT_RSA_EXPONENT,
    ) -> None:
        self.private_key: rsa.RSAPrivateKey | None = None
        self.public_key: rsa.RSAPublicKey | None = None
        self.remote_public_key: rsa.RSAPublicKey | None = None
        if generate_key_pair:
            self.generateKeyPair(public_exponent, key_size)

    def generateKeyPair(
        self, public_exponent: int = DEFAULT_RSA_EXPONENT, key_size: int = DEFAULT_RSA_KEY_SIZE
    ) -> None:
        self.private_key = rsa.generate_private_key(
            public_exponent=public_exponent, key_size=key_size
        )
        self.public_key = self.private_key.public_key()

    def getKeySize(self) -> int | None:
        """Bits of the local public key's modulus."""
        return self.public_key.key_size if self.public_key else None

    def getPublicKey(
        self, pem_format: bool = DEFAULT_PEM_FORMAT
    ) -> bytes | rsa.RSAPublicKey | None:
        if not pem_format or self.public_key is None:
            return self.public_key
        return _crypto.public_pem(self.public_key)

    def getPrivateKey(
        self, pem_format: bool = DEFAULT_PEM_FORMAT
    ) -> bytes | rsa.RSAPrivateKey | None:
        if not pem_format or self.private_key is None:
            return self.private_key
        return _crypto.private_pem(self.private_key)

    def getRemotePublicKey(
        self, pem_format: bool = DEFAULT_PEM_FORMAT
    ) -> bytes | rsa.RSAPublicKey | None:
        if not pem_format or self.remote_public_key is None:
            return self.remote_public_key
        return _crypto.public_pem(self.remote_public_key)

    def setPublicKey(
        self, public_key: str | bytes | rsa.RSAPublicKey, pem_format: bool = DEFAULT_PEM_FORMAT
    ) -> None:
        self.public_key = _crypto.load_public_key(public_key) if pem_format else public_key

    def setPrivateKey(
        self,
        private_key: str | bytes | rsa.RSAPrivateKey,
        pem_format: bool = DEFAULT_PEM_FORMAT,
        derivate_public_key: bool = DEFAULT_DERIVATE_PUBLIC_KEY,
    ) -> None:
        self.private_key = _crypto.load_private_key(private_key) if pem_format else private_key
        if derivate_public_key:
            self.public_key = self.private_key.public_key()

    def setRemotePublicKey(
        self,
        remote_public_key: str | bytes | rsa.RSAPublicKey,
        pem_format: bool = DEFAULT_PEM_FORMAT,
    ) -> None:
        self.remote_public_key = (
            _crypto.load_public_key(remote_public_key) if pem_format else remote_public_key
        )

    def encryptData(self, data: str | bytes, use_local_public_key: bool = False) -> bytes:
        key = self.public_key if use_local_public_key else self.remote_public_key
        if key is None:
            which = "Local" if use_local_public_key else "Remote"
            raise ValueError(f"{which} public key is not set")
        return _crypto.rsa_oaep_encrypt(key, _encode(data))

    def decryptData(self, cipher: bytes, decode: bool = True) -> str | bytes:
        if self.private_key is None:
            raise ValueError("Local private key is not set")
        plain = _crypto.rsa_oaep_decrypt(self.private_key, cipher)
        return plain.decode() if decode else plain

    def signData(self, data: str | bytes) -> bytes:
        if self.private_key is None:
            raise ValueError("Local private key is not set")
        return self.private_key.sign(_encode(data), _PSS, hashes.SHA256())

    def verifyDataSignature(self, signature: bytes, data: str | bytes) -> bool:
        if self.public_key is None:
            raise ValueError("Local public key is not set")
        try:
            self.public_key.verify(signature, _encode(data), _PSS, hashes.SHA256())
        except InvalidSignature:
            return False
        return True


class AESWrapper:
    """An AES key and IV; every encryptData/decryptData call starts from the set IV."""

    def __init__(self, key_size: int = DEFAULT_AES_KEY_SIZE) -> None:
        if key_size not in (128, 192, 256):
            raise ValueError(f"AES key size must be 128, 192 or 256 bits, not {key_size}")
        self.key = _crypto.random_bytes(key_size // 8)
        self.iv = _crypto.random_bytes(_crypto.AES_BLOCK_SIZE)

    def getKeySize(self) -> int:
        return len(self.key) * 8

    def getKey(self) -> tuple[bytes, bytes]:
        return self.key, self.iv

    def setKey(self, key: bytes, iv: bytes | None = None) -> None:
        if len(key) not in (16, 24, 32):
            raise ValueError(f"AES key must be 16, 24 or 32 bytes, not {len(key)}")
        if iv is not None and len(iv) != _crypto.AES_BLOCK_SIZE:
            raise ValueError(f"AES IV must be 16 bytes, not {len(iv)}")
        self.key = key
        self.iv = iv if iv is not None else _crypto.random_bytes(_crypto.AES_BLOCK_SIZE)

    def encryptData(self, data: str | bytes) -> bytes:
        return _crypto.aes_cbc_encrypt(self.key, self.iv, _encode(data))

    def decryptData(self, cipher: bytes, decode: bool = True) -> str | bytes:
        plain = _crypto.aes_cbc_decrypt(self.key, self.iv, cipher)
        return plain.decode() if decode else plain

    # Undocumented helpers of the original, kept for code that used them.
    def _pad_data(self, data: bytes, size: int = 128) -> bytes:
        padder = _sym_padding.PKCS7(size).padder()
        return padder.update(data) + padder.finalize()

    def _unpad_data(self, data: bytes, size: int = 128) -> bytes:
        unpadder = _sym_padding.PKCS7(size).unpadder()
        return unpadder.update(data) + unpadder.finalize()
