"""Model files: sha256 with its sidecar cache, verify, GGUF metadata and corrupt-file handling."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest

from inference import modelfile
from inference.errors import ModelChecksumError, ModelCorruptError, ModelNotFoundError
from inference.modelfile import (
    DEFAULT_SHA256,
    ModelInfo,
    file_sha256,
    file_type_name,
    format_info,
    read_info,
    sidecar_path,
    verify,
)

TOKENS = ["<pad>", "<eos>", "<bos>", "a", "b", "c", "d"]
EMBED = 16
# token_embd (7 x 16) + two norms (16 each) + attn_q (16 x 16)
EXPECTED_PARAMS = len(TOKENS) * EMBED + 2 * EMBED + EMBED * EMBED


def write_tiny_gguf(path: Path) -> Path:
    """Write a small gemma2-shaped GGUF (F32 tensors, Q4_K_M file type) to ``path``."""
    writer = gguf.GGUFWriter(path, "gemma2")
    writer.add_name("Tiny Meditron Test")
    writer.add_file_type(int(gguf.LlamaFileType.MOSTLY_Q4_K_M))
    writer.add_context_length(8192)
    writer.add_block_count(1)
    writer.add_embedding_length(EMBED)
    writer.add_feed_forward_length(4 * EMBED)
    writer.add_head_count(2)
    writer.add_head_count_kv(1)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(TOKENS)
    rng = np.random.default_rng(0)
    writer.add_tensor("token_embd.weight", rng.standard_normal((len(TOKENS), EMBED), np.float32))
    writer.add_tensor("blk.0.attn_norm.weight", np.ones(EMBED, np.float32))
    writer.add_tensor("blk.0.attn_q.weight", rng.standard_normal((EMBED, EMBED), np.float32))
    writer.add_tensor("output_norm.weight", np.ones(EMBED, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def tiny_gguf(tmp_path: Path) -> Path:
    """A freshly written tiny GGUF file."""
    return write_tiny_gguf(tmp_path / "tiny.gguf")


def test_defaults_name_the_meditron_q4km_file() -> None:
    assert modelfile.DEFAULT_REPO == "QuantFactory/Meditron3-Gemma2-2B-GGUF"
    assert modelfile.DEFAULT_FILENAME == "Meditron3-Gemma2-2B.Q4_K_M.gguf"
    assert DEFAULT_SHA256 == "e27bcb7b21b4a6bc728533ca0352ae9d003578b4c08ce0c4973b5f21a8a851b3"


# ---------------------------------------------------------------- sha256 and its cache


def test_file_sha256_matches_hashlib_and_reports_progress(tmp_path: Path) -> None:
    data = os.urandom(3 * modelfile.CHUNK_SIZE + 123)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    seen: list[tuple[int, int]] = []
    digest = file_sha256(path, progress=lambda done, total: seen.append((done, total)))
    assert digest == hashlib.sha256(data).hexdigest()
    assert [done for done, _ in seen] == [2**20, 2**21, 3 * 2**20, len(data)]
    assert {total for _, total in seen} == {len(data)}


def test_sha256_sidecar_is_written_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"model bytes")
    real = file_sha256(path)
    side = sidecar_path(path)
    assert side == tmp_path / "m.gguf.sha256"
    st = path.stat()
    assert side.read_text().split() == [str(st.st_size), str(st.st_mtime_ns), real]
    # Plant a different digest for the same size and mtime: a reused cache returns it unread.
    planted = "ab" * 32
    side.write_text(f"{st.st_size} {st.st_mtime_ns} {planted}\n")
    seen: list[int] = []
    assert file_sha256(path, progress=lambda done, _total: seen.append(done)) == planted
    assert seen == []


def test_sha256_cache_is_invalidated_when_size_changes(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"first")
    file_sha256(path)
    st = path.stat()
    path.write_bytes(b"second version")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime, other size
    assert file_sha256(path) == hashlib.sha256(b"second version").hexdigest()


def test_sha256_cache_is_invalidated_when_mtime_changes(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"aaaa")
    file_sha256(path)
    st = path.stat()
    path.write_bytes(b"bbbb")  # same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert file_sha256(path) == hashlib.sha256(b"bbbb").hexdigest()
    assert sidecar_path(path).read_text().split()[2] == hashlib.sha256(b"bbbb").hexdigest()


def test_garbled_sidecar_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"xyz")
    st = path.stat()
    sidecar_path(path).write_text(f"{st.st_size} {st.st_mtime_ns} not-a-digest\n")
    assert file_sha256(path) == hashlib.sha256(b"xyz").hexdigest()


def test_file_sha256_of_missing_file_raises_not_found(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        file_sha256(tmp_path / "nope.gguf")
    assert info.value.path == tmp_path / "nope.gguf"


def test_verify_returns_sha256_and_accepts_upper_case(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"weights")
    digest = hashlib.sha256(b"weights").hexdigest()
    assert verify(path, digest.upper()) == digest
    assert verify(path, None) == digest


def test_verify_wrong_sha256_raises_checksum_error(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"weights")
    with pytest.raises(ModelChecksumError) as info:
        verify(path, DEFAULT_SHA256)
    assert info.value.expected == DEFAULT_SHA256
    assert info.value.actual == hashlib.sha256(b"weights").hexdigest()
    assert str(path) in str(info.value)


def test_verify_missing_file_raises_not_found(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="not found"):
        verify(tmp_path / "absent.gguf", DEFAULT_SHA256)


# ---------------------------------------------------------------- GGUF metadata


def test_read_info_returns_the_gguf_metadata(tiny_gguf: Path) -> None:
    info = read_info(tiny_gguf)
    assert info == ModelInfo(
        path=tiny_gguf,
        size_bytes=tiny_gguf.stat().st_size,
        sha256=hashlib.sha256(tiny_gguf.read_bytes()).hexdigest(),
        architecture="gemma2",
        name="Tiny Meditron Test",
        file_type="Q4_K_M",
        context_length=8192,
        block_count=1,
        embedding_length=EMBED,
        head_count=2,
        vocab_size=len(TOKENS),
        tensor_count=4,
        parameter_count=EXPECTED_PARAMS,
    )


def test_read_info_without_optional_keys(tmp_path: Path) -> None:
    path = tmp_path / "bare.gguf"
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_tensor("output_norm.weight", np.ones(8, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    info = read_info(path)
    assert (info.architecture, info.name, info.file_type) == ("llama", None, None)
    assert (info.context_length, info.vocab_size, info.parameter_count) == (None, None, 8)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")
def test_read_info_leaves_no_mapping_or_open_file(tiny_gguf: Path) -> None:
    read_info(tiny_gguf)
    assert str(tiny_gguf) not in Path("/proc/self/maps").read_text()
    open_files = [os.readlink(fd) for fd in Path("/proc/self/fd").iterdir() if fd.is_symlink()]
    assert str(tiny_gguf) not in open_files


def _reader_facts(path: Path) -> tuple[object, ...]:
    """The same facts as read by gguf.GGUFReader, the reference implementation."""
    reader = gguf.GGUFReader(path)
    arch = reader.get_field("general.architecture").contents()
    tokens = reader.get_field("tokenizer.ggml.tokens")
    facts = (
        arch,
        reader.get_field(f"{arch}.context_length").contents(),
        None if tokens is None else len(tokens.data),
        len(reader.tensors),
        sum(int(t.n_elements) for t in reader.tensors),
    )
    del reader, tokens
    return facts


def _write_varied_gguf(path: Path, endianess: gguf.GGUFEndian) -> Path:
    """Write a GGUF using every value type, nested arrays and a custom alignment."""
    writer = gguf.GGUFWriter(path, "llama", endianess=endianess)
    writer.add_custom_alignment(64)
    writer.add_context_length(4096)
    writer.add_uint8("test.u8", 7)
    writer.add_int16("test.i16", -3)
    writer.add_float64("test.f64", 0.5)
    writer.add_bool("test.flag", True)
    writer.add_int64("test.i64", -(2**40))
    writer.add_array("test.floats", [0.25, 0.5, 0.75])
    writer.add_array("test.nested", [[1, 2], [3, 4, 5]])
    writer.add_token_list(["x", "yy", "zzz", "ünïcode"])
    writer.add_token_scores([0.0, -1.0, -2.0, -3.0])
    writer.add_token_types([1, 1, 1, 1])
    writer.add_tensor("a.weight", np.ones((3, 5), np.float32))  # the writer byte-swaps
    writer.add_tensor("b.weight", np.ones((2, 3, 4), np.float32))
    writer.add_tensor("c.weight", np.ones(1, np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize("endianess", [gguf.GGUFEndian.LITTLE, gguf.GGUFEndian.BIG])
def test_read_info_agrees_with_gguf_reader(tmp_path: Path, endianess: gguf.GGUFEndian) -> None:
    path = _write_varied_gguf(tmp_path / "varied.gguf", endianess)
    info = read_info(path)
    assert (info.architecture, info.context_length, info.vocab_size) == ("llama", 4096, 4)
    assert (info.tensor_count, info.parameter_count) == (3, 15 + 24 + 1)
    assert _reader_facts(path) == (
        info.architecture,
        info.context_length,
        info.vocab_size,
        info.tensor_count,
        info.parameter_count,
    )


def test_read_info_agrees_with_gguf_reader_on_the_gemma2_file(tiny_gguf: Path) -> None:
    info = read_info(tiny_gguf)
    assert _reader_facts(tiny_gguf) == (
        "gemma2",
        info.context_length,
        info.vocab_size,
        info.tensor_count,
        info.parameter_count,
    )


def test_file_type_names_follow_llama_cpp() -> None:
    assert file_type_name(15) == "Q4_K_M"
    assert file_type_name(0) == "F32"
    assert file_type_name(1) == "F16"
    assert file_type_name(2) == "Q4_0"
    assert file_type_name(999) == "unknown (999)"


def test_format_info_lists_the_main_facts(tiny_gguf: Path) -> None:
    text = format_info(read_info(tiny_gguf))
    lines = text.splitlines()
    assert len(lines) >= 10
    assert any(line.startswith("Architecture:") and line.endswith("gemma2") for line in lines)
    assert any(line.startswith("Quantization:") and line.endswith("Q4_K_M") for line in lines)
    assert any(line.startswith("Context:") and line.endswith("8,192") for line in lines)
    assert any(line.startswith("Vocabulary:") and line.endswith("7") for line in lines)
    assert str(tiny_gguf) in text
    assert "Tiny Meditron Test" in text


# ---------------------------------------------------------------- broken files


def test_read_info_missing_file_raises_not_found(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        read_info(tmp_path / "missing.gguf")
    assert info.value.path == tmp_path / "missing.gguf"


def test_read_info_garbage_raises_corrupt_fast(tmp_path: Path) -> None:
    path = tmp_path / "garbage.gguf"
    path.write_bytes(b"<html>404 not found</html>" + os.urandom(1000))
    with pytest.raises(ModelCorruptError, match="not a GGUF file") as info:
        read_info(path)
    assert info.value.path == path


def test_read_info_empty_file_raises_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "empty.gguf"
    path.write_bytes(b"")
    with pytest.raises(ModelCorruptError, match="empty file"):
        read_info(path)


@pytest.mark.parametrize("keep", [6, 40, 200, -100, -1])
def test_read_info_truncated_file_raises_corrupt(tiny_gguf: Path, keep: int) -> None:
    data = tiny_gguf.read_bytes()
    truncated = tiny_gguf.with_name("truncated.gguf")
    truncated.write_bytes(data[:keep])
    with pytest.raises(ModelCorruptError, match="damaged or truncated") as info:
        read_info(truncated)
    assert info.value.path == truncated
    assert not info.value.__cause__


def test_every_truncation_is_reported_as_corrupt(tiny_gguf: Path) -> None:
    data = tiny_gguf.read_bytes()
    truncated = tiny_gguf.with_name("cut.gguf")
    header_end = data.index(b"output_norm.weight") + 64  # past the tensor table
    for keep in [*range(4, header_end), *range(header_end, len(data), 61)]:
        truncated.write_bytes(data[:keep])
        with pytest.raises(ModelCorruptError):
            read_info(truncated)


def test_damaged_header_bytes_never_escape_as_other_errors(tiny_gguf: Path) -> None:
    data = bytearray(tiny_gguf.read_bytes())
    damaged = tiny_gguf.with_name("damaged.gguf")
    rng = np.random.default_rng(1)
    corrupt = 0
    for _ in range(300):
        copy = bytearray(data)
        pos = int(rng.integers(4, 400))
        copy[pos] = int(rng.integers(0, 256))
        damaged.write_bytes(bytes(copy))
        try:
            read_info(damaged)
        except ModelCorruptError:
            corrupt += 1
    assert corrupt > 0
