"""Primitives of protocol/crypto.py and the seed-compatible façades of core/crypto.py."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from protocol_support import OAEP_SHA256, Wire

from anweddol_actors.core.crypto import AESWrapper, RSAWrapper
from anweddol_actors.protocol import crypto


def test_rsa_round_trip_matches_document_padding(server_key):
    block = crypto.rsa_oaep_encrypt(server_key.public_key(), b"s" * 48)
    assert len(block) == crypto.rsa_block_size(server_key) == 256
    # OAEP, MGF1-SHA256, SHA256, no label: the document's parameters decrypt it.
    assert server_key.decrypt(block, OAEP_SHA256) == b"s" * 48
    assert crypto.rsa_oaep_decrypt(server_key, block) == b"s" * 48
    with pytest.raises(ValueError):
        crypto.rsa_oaep_decrypt(server_key, b"\x00" * 256)


def test_aes_round_trip_and_padding():
    key, iv = b"k" * 32, b"i" * 16
    for size in (0, 1, 15, 16, 17, 1000):
        cipher = crypto.aes_cbc_encrypt(key, iv, b"x" * size)
        assert len(cipher) == (size // 16 + 1) * 16  # PKCS7 always adds padding
        assert crypto.aes_cbc_decrypt(key, iv, cipher) == b"x" * size
    assert Wire(key, iv)._unaes(iv, crypto.aes_cbc_encrypt(key, iv, b"abc")) == b"abc"
    with pytest.raises(ValueError, match="not a positive multiple of 16"):
        crypto.aes_cbc_decrypt(key, iv, b"x" * 15)
    with pytest.raises(ValueError, match="AES key must be"):
        crypto.aes_cbc_encrypt(b"short", iv, b"")
    with pytest.raises(ValueError, match="AES IV must be"):
        crypto.aes_cbc_encrypt(key, b"short", b"")


def test_pem_helpers(server_key):
    pem = crypto.public_pem(server_key)
    assert pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    assert crypto.public_pem(crypto.load_public_key(pem)) == pem
    assert crypto.public_pem(crypto.load_public_key(pem.decode())) == pem
    private = crypto.private_pem(server_key)
    assert crypto.load_private_key(private).private_numbers() == server_key.private_numbers()
    with pytest.raises(ValueError):
        crypto.load_public_key(b"nope")
    with pytest.raises(ValueError):
        crypto.load_private_key(pem)


def test_generate_private_key_size():
    assert crypto.generate_private_key(1024).key_size == 1024


class TestRSAWrapper:
    def test_seed_surface(self):
        local = RSAWrapper(key_size=2048)
        remote = RSAWrapper(key_size=2048)
        assert local.getKeySize() == 2048
        assert isinstance(local.private_key, rsa.RSAPrivateKey)
        assert local.getPrivateKey(pem_format=False) is local.private_key
        assert local.getPublicKey().startswith(b"-----BEGIN PUBLIC KEY-----")
        local.setRemotePublicKey(remote.getPublicKey())
        assert local.getRemotePublicKey() == remote.getPublicKey()
        cipher = local.encryptData("hello")
        assert remote.decryptData(cipher) == "hello"
        assert remote.decryptData(cipher, decode=False) == b"hello"
        assert local.decryptData(local.encryptData(b"me", use_local_public_key=True)) == "me"
        signature = local.signData("data")
        assert local.verifyDataSignature(signature, "data")
        assert not local.verifyDataSignature(signature, "other")

    def test_without_keys(self):
        empty = RSAWrapper(generate_key_pair=False)
        assert empty.getKeySize() is None and empty.getPublicKey() is None
        with pytest.raises(ValueError, match="Remote public key is not set"):
            empty.encryptData("x")
        with pytest.raises(ValueError, match="Local private key is not set"):
            empty.decryptData(b"x")
        donor = RSAWrapper(key_size=1024)
        empty.setPrivateKey(donor.getPrivateKey(), derivate_public_key=True)
        assert empty.getPublicKey() == donor.getPublicKey()


def test_aes_wrapper():
    aes = AESWrapper()
    assert aes.getKeySize() == 256
    key, iv = aes.getKey()
    assert len(key) == 32 and len(iv) == 16
    assert aes.decryptData(aes.encryptData("texte")) == "texte"
    assert crypto.aes_cbc_decrypt(key, iv, aes.encryptData(b"raw")) == b"raw"
    aes.setKey(b"k" * 16)
    assert aes.getKeySize() == 128 and len(aes.getKey()[1]) == 16
    assert aes._unpad_data(aes._pad_data(b"abc")) == b"abc"
    with pytest.raises(ValueError):
        AESWrapper(100)
