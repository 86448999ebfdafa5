"""Random-weight gemma2 GGUF files: the header llama.cpp reads, the tokenizer, quantizing."""

from __future__ import annotations

from pathlib import Path

import pytest
from gguf import GGUFReader, GGUFValueType, TokenType

from inference.engine import Engine
from inference.synthetic import (
    BOS_ID,
    END_OF_TURN_ID,
    EOS_ID,
    GEMMA2_2B,
    START_OF_TURN_ID,
    TINY,
    Gemma2Shape,
    bench_model_name,
    build_vocab,
    ensure_bench_model,
    quantize,
    write_gemma2_gguf,
)

SMALL_BENCH = Gemma2Shape(
    n_layer=1,
    n_embd=256,
    n_ff=256,
    n_head=2,
    n_head_kv=1,
    head_dim=128,
    n_vocab=512,
    n_ctx=512,
    sliding_window=256,
)  # one layer: quick to write and quantize


def _field(reader: GGUFReader, key: str) -> object:
    """A scalar or string metadata value."""
    field = reader.fields[key]
    if field.types[0] == GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode()
    return field.parts[field.data[0]][0].item()


def test_tiny_file_has_gemma2_header_and_is_small(tiny_model_path: Path) -> None:
    reader = GGUFReader(tiny_model_path)
    assert _field(reader, "general.architecture") == "gemma2"
    assert _field(reader, "gemma2.block_count") == TINY.n_layer
    assert _field(reader, "gemma2.embedding_length") == TINY.n_embd
    assert _field(reader, "gemma2.attention.head_count_kv") == TINY.n_head_kv
    assert _field(reader, "gemma2.attention.sliding_window") == TINY.sliding_window
    assert _field(reader, "gemma2.final_logit_softcapping") == pytest.approx(30.0)
    assert _field(reader, "gemma2.attn_logit_softcapping") == pytest.approx(50.0)
    assert _field(reader, "tokenizer.ggml.model") == "llama"
    assert _field(reader, "tokenizer.ggml.bos_token_id") == BOS_ID
    assert _field(reader, "tokenizer.ggml.eos_token_id") == EOS_ID
    assert _field(reader, "tokenizer.ggml.add_bos_token") is True
    assert _field(reader, "tokenizer.ggml.add_eos_token") is False
    assert "<start_of_turn>" in str(_field(reader, "tokenizer.chat_template"))
    assert tiny_model_path.stat().st_size < 8 * 2**20


def test_tensors_have_llama_cpp_names_and_neutral_norms(tiny_model_path: Path) -> None:
    tensors = {t.name: t for t in GGUFReader(tiny_model_path).tensors}
    per_block = {
        "attn_norm",
        "attn_q",
        "attn_k",
        "attn_v",
        "attn_output",
        "post_attention_norm",
        "ffn_norm",
        "ffn_gate",
        "ffn_up",
        "ffn_down",
        "post_ffw_norm",
    }
    expected = {"token_embd.weight", "output_norm.weight"} | {
        f"blk.{i}.{name}.weight" for i in range(TINY.n_layer) for name in per_block
    }
    assert set(tensors) == expected
    assert list(tensors["token_embd.weight"].shape) == [TINY.n_embd, TINY.n_vocab]
    assert list(tensors["blk.0.attn_k.weight"].shape) == [TINY.n_embd, TINY.n_head_kv * TINY.head_dim]
    assert (tensors["blk.1.post_ffw_norm.weight"].data == 1.0).all()
    assert (tensors["output_norm.weight"].data == 1.0).all()
    weights = tensors["blk.0.ffn_up.weight"].data
    assert 0.01 < float(weights.std()) < 0.03


def test_vocab_has_gemma_special_tokens_bytes_and_unique_pieces() -> None:
    tokens, scores, types = build_vocab(TINY.n_vocab)
    assert len(tokens) == len(set(tokens)) == len(scores) == len(types) == TINY.n_vocab
    assert tokens[:4] == ["<pad>", "<eos>", "<bos>", "<unk>"]
    assert tokens[START_OF_TURN_ID] == "<start_of_turn>"
    assert tokens[END_OF_TURN_ID] == "<end_of_turn>"
    assert types[END_OF_TURN_ID] == TokenType.CONTROL
    byte_tokens = [t for t, k in zip(tokens, types, strict=True) if k == TokenType.BYTE]
    assert byte_tokens == [f"<0x{b:02X}>" for b in range(256)]
    assert "\u2581the" in tokens


def test_full_size_vocab_fills_256000_unique_pieces() -> None:
    tokens, _, _ = build_vocab(GEMMA2_2B.n_vocab)
    assert len(tokens) == len(set(tokens)) == 256000


def test_same_seed_same_bytes_other_seed_other_weights(tmp_path: Path) -> None:
    first = write_gemma2_gguf(tmp_path / "a.gguf", TINY, seed=7).read_bytes()
    again = write_gemma2_gguf(tmp_path / "b.gguf", TINY, seed=7).read_bytes()
    other = write_gemma2_gguf(tmp_path / "c.gguf", TINY, seed=8).read_bytes()
    assert first == again
    assert first != other
    assert len(first) == len(other)


def test_text_tokenizes_with_control_tokens_and_byte_fallback(tiny_model_path: Path) -> None:
    with Engine(tiny_model_path, n_ctx=256) as engine:
        tokens = engine.tokenize("<start_of_turn>user\nthe patient 日本<end_of_turn>")
        assert tokens[0] == BOS_ID
        assert tokens[1] == START_OF_TURN_ID
        assert tokens[-1] == END_OF_TURN_ID
        # "日本" is not a piece: six UTF-8 bytes, each its own byte token (ids 108..363).
        assert sum(1 for t in tokens if 108 <= t < 364) == 6


def test_quantize_to_q4_k_m_gives_a_smaller_loadable_file(tiny_model_path: Path, tmp_path: Path) -> None:
    quantized = quantize(tiny_model_path, tmp_path / "tiny-q4km.gguf", "Q4_K_M")
    types = {t.tensor_type.name for t in GGUFReader(quantized).tensors}
    assert "Q4_K" in types
    assert quantized.stat().st_size < tiny_model_path.stat().st_size / 2
    with Engine(quantized, n_ctx=512) as engine:
        result = engine.generate("<start_of_turn>user\nhi", max_tokens=4)
    assert result.completion_tokens == 4


def test_quantize_rejects_unknown_type(tiny_model_path: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Q9_Z"):
        quantize(tiny_model_path, tmp_path / "x.gguf", "Q9_Z")


def test_ensure_bench_model_writes_once_and_cleans_up(tmp_path: Path) -> None:
    shape = SMALL_BENCH
    messages: list[str] = []
    path = ensure_bench_model(tmp_path / "cache", shape, "Q8_0", progress=messages.append)
    assert path.name == bench_model_name(shape, "Q8_0")
    assert "Q8_0" in path.name
    assert "L1-E256" in path.name
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no F16 or temporary left
    assert {t.tensor_type.name for t in GGUFReader(path).tensors} >= {"Q8_0"}
    assert any("quantizing" in m for m in messages)
    mtime = path.stat().st_mtime_ns
    assert ensure_bench_model(tmp_path / "cache", shape, "Q8_0") == path
    assert path.stat().st_mtime_ns == mtime


def test_ensure_bench_model_removes_leftovers_of_dead_writers(tmp_path: Path) -> None:
    shape = SMALL_BENCH
    stem = bench_model_name(shape, "F16").removesuffix(".gguf")
    cache = tmp_path / "cache"
    cache.mkdir()
    dead = cache / f"{stem}-F16.999999999.tmp"  # no such pid
    dead.write_bytes(b"partial")
    path = ensure_bench_model(cache, shape, "F16")
    assert not dead.exists()
    assert sorted(p.name for p in cache.iterdir()) == [path.name]


def test_2b_shape_matches_gemma2_2b() -> None:
    shape = GEMMA2_2B
    assert (shape.n_layer, shape.n_embd, shape.n_ff) == (26, 2304, 9216)
    assert (shape.n_head, shape.n_head_kv, shape.head_dim) == (8, 4, 256)
    assert (shape.n_vocab, shape.n_ctx, shape.sliding_window) == (256000, 8192, 4096)
    assert (shape.attn_softcap, shape.final_softcap) == (50.0, 30.0)
