"""Pseudonyms: HMAC-SHA256 under a key kept outside the database."""

from __future__ import annotations

import hashlib
import hmac
import stat
from pathlib import Path

import pytest

from storage.errors import PseudonymKeyError
from storage.pseudonym import KEY_FILE_NAME, Pseudonymizer

KEY_A = b"a" * 32
KEY_B = b"b" * 32


def test_same_key_gives_stable_pseudonyms() -> None:
    """The same key and id always give the same pseudonym: the HMAC of ``user:<id>``."""
    first, second = Pseudonymizer.from_key(KEY_A), Pseudonymizer.from_key(KEY_A)
    expected = hmac.new(KEY_A, b"user:12345", hashlib.sha256).hexdigest()
    assert first.user(12345) == second.user(12345) == expected


def test_different_keys_give_different_pseudonyms() -> None:
    """Another key gives another pseudonym for the same id."""
    assert Pseudonymizer.from_key(KEY_A).user(12345) != Pseudonymizer.from_key(KEY_B).user(12345)


def test_user_and_chat_domains_differ() -> None:
    """A user id and a chat id with the same number get different pseudonyms."""
    pseudonymizer = Pseudonymizer.from_key(KEY_A)
    assert pseudonymizer.user(777) != pseudonymizer.chat(777)
    assert len(pseudonymizer.chat(-100123)) == 64


def test_key_file_is_created_0600_and_reused(tmp_path: Path) -> None:
    """The key file is created once with mode 0600 and read back on the next start."""
    first = Pseudonymizer.load_or_create(tmp_path, None)
    path = tmp_path / KEY_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_text().strip()) == 64
    second = Pseudonymizer.load_or_create(tmp_path, None)
    assert first.user(42) == second.user(42)


def test_key_file_readable_by_group_is_refused(tmp_path: Path) -> None:
    """A key file that group or others can read is refused."""
    Pseudonymizer.load_or_create(tmp_path, None)
    path = tmp_path / KEY_FILE_NAME
    path.chmod(0o640)
    with pytest.raises(PseudonymKeyError, match="0640") as caught:
        Pseudonymizer.load_or_create(tmp_path, None)
    assert caught.value.path == str(path)


def test_short_key_file_is_refused(tmp_path: Path) -> None:
    """A key file with fewer than 32 bytes is refused, and the key is not in the message."""
    path = tmp_path / KEY_FILE_NAME
    path.write_text("tooshortkeymaterial\n")
    path.chmod(0o600)
    with pytest.raises(PseudonymKeyError) as caught:
        Pseudonymizer.load_or_create(tmp_path, None)
    assert "tooshortkeymaterial" not in str(caught.value)


def test_key_from_environment_wins_and_creates_no_file(tmp_path: Path) -> None:
    """A given key is used as is; no key file is written."""
    from_env = Pseudonymizer.load_or_create(tmp_path, "k" * 40)
    assert from_env.user(1) == Pseudonymizer.from_key(b"k" * 40).user(1)
    assert not (tmp_path / KEY_FILE_NAME).exists()


def test_short_key_from_environment_is_refused_without_echoing_it(tmp_path: Path) -> None:
    """A short PSEUDONYM_KEY is refused and the error does not contain it."""
    with pytest.raises(PseudonymKeyError) as caught:
        Pseudonymizer.load_or_create(tmp_path, "shortsecret")
    assert "shortsecret" not in str(caught.value)


def test_key_never_in_repr_or_str() -> None:
    """repr() and str() do not reveal the key."""
    secret = b"super-secret-key-material-0123456789"
    pseudonymizer = Pseudonymizer.from_key(secret)
    assert secret.decode() not in repr(pseudonymizer)
    assert secret.decode() not in str(pseudonymizer)
    assert "hidden" in repr(pseudonymizer)
