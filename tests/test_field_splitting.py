"""Long answers are split at natural boundaries into messages Telegram accepts."""

from __future__ import annotations

from bot.telegram.splitting import split_message, utf16_len


def test_short_text_is_one_piece() -> None:
    assert split_message("Give ORS.") == ["Give ORS."]


def test_paragraphs_are_preferred() -> None:
    paragraph = "Sentence number one is here. " * 60
    text = "\n\n".join([paragraph.strip()] * 4)
    pieces = split_message(text)
    assert len(pieces) == 2
    assert all(utf16_len(p) <= 4096 for p in pieces)
    assert all(p.endswith("here.") for p in pieces)
    assert "\n\n".join(pieces) == text


def test_sentences_when_a_paragraph_is_too_long() -> None:
    text = " ".join(f"Step {i} is to check the airway." for i in range(400))
    pieces = split_message(text)
    assert len(pieces) > 1
    assert all(p.endswith(".") and utf16_len(p) <= 4096 for p in pieces)
    assert " ".join(pieces) == text


def test_no_boundary_at_all_is_cut_hard_and_emoji_count_double() -> None:
    assert [len(p) for p in split_message("x" * 9000)] == [4096, 4096, 808]
    pieces = split_message("🙂" * 3000)
    assert [utf16_len(p) for p in pieces] == [4096, 1904]
    assert "".join(pieces) == "🙂" * 3000
