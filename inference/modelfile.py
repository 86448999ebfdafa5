"""Model files: the default GGUF, sha256 checks (cached in a sidecar file), the one GGUF header reader."""

from __future__ import annotations

import hashlib
import math
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import gguf

from inference.errors import ModelChecksumError, ModelCorruptError, ModelNotFoundError

DEFAULT_REPO = "QuantFactory/Meditron3-Gemma2-2B-GGUF"
DEFAULT_FILENAME = "Meditron3-Gemma2-2B.Q4_K_M.gguf"
DEFAULT_SHA256 = "e27bcb7b21b4a6bc728533ca0352ae9d003578b4c08ce0c4973b5f21a8a851b3"
# The exact byte size is not pinned (only "1.71 GB" is known); the sha256 is what is checked.
DEFAULT_SIZE_HINT = "1.71 GB"

CHUNK_SIZE = 1 << 20
GGUF_MAGIC = struct.pack("<I", gguf.GGUF_MAGIC)  # b"GGUF"
SIDECAR_SUFFIX = ".sha256"

HashProgress = Callable[[int, int], None]


def sidecar_path(path: Path) -> Path:
    """Return the path of the sha256 cache file kept next to ``path``."""
    return path.with_name(path.name + SIDECAR_SUFFIX)


def _read_cached_sha256(path: Path, st: os.stat_result) -> str | None:
    """Return the cached sha256 of ``path`` if the sidecar matches its size and mtime."""
    try:
        fields = sidecar_path(path).read_text(encoding="ascii").split()
    except (OSError, UnicodeDecodeError):
        return None
    if len(fields) != 3 or fields[:2] != [str(st.st_size), str(st.st_mtime_ns)]:
        return None
    digest = fields[2].lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        return None
    return digest


def remember_sha256(path: Path, sha256: str) -> None:
    """Record ``sha256`` for the current size and mtime of ``path`` (best effort)."""
    try:
        st = path.stat()
        side = sidecar_path(path)
        tmp = side.with_name(side.name + ".tmp")
        tmp.write_text(f"{st.st_size} {st.st_mtime_ns} {sha256.lower()}\n", encoding="ascii")
        os.replace(tmp, side)
    except OSError:
        return  # a read-only model directory only costs a re-hash next time


def hash_stream(path: Path, hasher: Any, progress: HashProgress | None = None) -> int:
    """Feed the whole file into ``hasher`` in 1 MiB chunks; return the byte count."""
    total = path.stat().st_size
    done = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            hasher.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    return done


def file_sha256(path: Path, *, progress: HashProgress | None = None) -> str:
    """Return the sha256 of ``path``, from the sidecar cache when size and mtime still match."""
    try:
        st = path.stat()
    except OSError as exc:
        raise ModelNotFoundError(path, f"{path}: model file not found ({exc.strerror})") from None
    cached = _read_cached_sha256(path, st)
    if cached is not None:
        return cached
    hasher = hashlib.sha256()
    try:
        hash_stream(path, hasher, progress)
    except OSError as exc:
        raise ModelNotFoundError(path, f"{path}: cannot read the model file ({exc})") from None
    digest = hasher.hexdigest()
    remember_sha256(path, digest)
    return digest


def verify(path: Path, expected_sha256: str | None) -> str:
    """Check that ``path`` exists and has ``expected_sha256`` (if given); return its sha256."""
    if not path.is_file():
        raise ModelNotFoundError(path, f"{path}: model file not found")
    actual = file_sha256(path)
    if expected_sha256 is not None and actual != expected_sha256.strip().lower():
        raise ModelChecksumError(path, expected_sha256, actual)
    return actual


@dataclass(frozen=True)
class ModelInfo:
    """What a GGUF file says about the model inside it, with the file's size and sha256."""

    path: Path
    size_bytes: int
    sha256: str
    architecture: str
    name: str | None
    file_type: str | None
    context_length: int | None
    block_count: int | None
    embedding_length: int | None
    head_count: int | None
    vocab_size: int | None
    tensor_count: int
    parameter_count: int


def file_type_name(value: int) -> str:
    """Turn a llama.cpp ftype number (general.file_type) into a name such as ``Q4_K_M``."""
    try:
        name = gguf.LlamaFileType(value).name
    except ValueError:
        return f"unknown ({value})"
    for prefix in ("MOSTLY_", "ALL_"):
        name = name.removeprefix(prefix)
    return str(name)


_SCALAR_FORMATS = {  # struct format of one item of each fixed-size GGUF value type
    gguf.GGUFValueType.UINT8: "B",
    gguf.GGUFValueType.INT8: "b",
    gguf.GGUFValueType.UINT16: "H",
    gguf.GGUFValueType.INT16: "h",
    gguf.GGUFValueType.UINT32: "I",
    gguf.GGUFValueType.INT32: "i",
    gguf.GGUFValueType.FLOAT32: "f",
    gguf.GGUFValueType.BOOL: "?",
    gguf.GGUFValueType.UINT64: "Q",
    gguf.GGUFValueType.INT64: "q",
    gguf.GGUFValueType.FLOAT64: "d",
}
_MAX_DIMS = 4
_PARSE_ERRORS = (ValueError, KeyError, OverflowError, UnicodeDecodeError, struct.error, OSError)


@dataclass(frozen=True)
class _ArrayValue:
    """An array in the metadata: only its length is kept (its items are skipped)."""

    length: int


class GGUFHeader:
    """Streaming reader of a GGUF header (metadata and tensor table), on gguf-py's constants.

    gguf.GGUFReader builds numpy views for every array item: about 20 s for a 256k-token
    vocabulary on a small CPU. This reads the same layout with struct and skips array items.
    """

    def __init__(self, f: BinaryIO, size: int) -> None:
        """Read from ``f``, a file of ``size`` bytes, positioned at its start."""
        self.f = f
        self.size = size
        self.order = "<"
        self.fields: dict[str, Any] = {}
        self.tensor_count = 0
        self.parameter_count = 0

    def _read(self, n: int) -> bytes:
        """Read exactly ``n`` bytes or fail."""
        data = self.f.read(n)
        if len(data) != n:
            raise ValueError("the file ends inside the GGUF header")
        return data

    def _unpack(self, fmt: str) -> Any:
        """Read one value of struct format ``fmt`` in the file's byte order."""
        fmt = self.order + fmt
        return struct.unpack(fmt, self._read(struct.calcsize(fmt)))[0]

    def _type(self) -> Any:
        """Read a value type (a gguf.GGUFValueType; ValueError when unknown)."""
        return gguf.GGUFValueType(self._unpack("I"))

    def _skip(self, n: int) -> None:
        """Skip ``n`` bytes, failing when that passes the end of the file."""
        if n < 0 or self.f.tell() + n > self.size:
            raise ValueError("a length in the GGUF header points past the end of the file")
        self.f.seek(n, os.SEEK_CUR)

    def _string(self) -> str:
        """Read a length-prefixed UTF-8 string."""
        length = self._unpack("Q")
        if length > self.size:
            raise ValueError("a string length in the GGUF header is larger than the file")
        return self._read(length).decode("utf-8")

    def _value(self, vtype: Any) -> Any:
        """Read a metadata value of type ``vtype`` (arrays become _ArrayValue)."""
        if vtype in _SCALAR_FORMATS:
            return self._unpack(_SCALAR_FORMATS[vtype])
        if vtype is gguf.GGUFValueType.STRING:
            return self._string()
        return self._array()

    def _array(self) -> _ArrayValue:
        """Skip over an array's items (large ones in one seek) and return its length."""
        item_type, length = self._type(), self._unpack("Q")
        if item_type in _SCALAR_FORMATS:
            self._skip(length * struct.calcsize(_SCALAR_FORMATS[item_type]))
        elif item_type is gguf.GGUFValueType.STRING:
            for _ in range(length):
                self._skip(self._unpack("Q"))
        else:
            for _ in range(length):
                self._value(item_type)
        return _ArrayValue(length)

    def _prelude(self) -> tuple[int, int]:
        """Check magic and version; return (tensor count, metadata count)."""
        if self._unpack("I") != gguf.GGUF_MAGIC:
            raise ValueError("GGUF magic missing")
        version = self._unpack("I")
        if version & 0xFFFF == 0:  # written on a machine of the other byte order
            self.order = ">"
            version = struct.unpack(">I", struct.pack("<I", version))[0]
        if not 2 <= version <= gguf.GGUF_VERSION:
            raise ValueError(f"GGUF version {version} is not supported")
        return self._unpack("Q"), self._unpack("Q")

    def _metadata(self, count: int) -> None:
        """Read ``count`` key/value pairs into ``fields``."""
        for _ in range(count):
            key = self._string()
            if key in self.fields:
                raise ValueError(f"duplicate metadata key {key}")
            self.fields[key] = self._value(self._type())

    def _tensor(self) -> tuple[int, int]:
        """Read one tensor-table entry; return (offset in data, byte count)."""
        self._string()
        n_dims = self._unpack("I")
        if n_dims > _MAX_DIMS:
            raise ValueError(f"a tensor has {n_dims} dimensions")
        n_elems = math.prod(self._unpack("Q") for _ in range(n_dims))
        block_size, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(self._unpack("I"))]
        offset = self._unpack("Q")
        self.parameter_count += n_elems
        return offset, n_elems * type_size // block_size

    def _alignment(self) -> int:
        """Return general.alignment (a power of two), else the GGUF default."""
        align = self.fields.get("general.alignment", gguf.GGUF_DEFAULT_ALIGNMENT)
        if not isinstance(align, int) or align <= 0 or align & (align - 1):
            raise ValueError("general.alignment is not a power of two")
        return align

    def parse(self) -> None:
        """Read the whole header and check that every tensor lies inside the file."""
        n_tensors, n_kv = self._prelude()
        if n_tensors > self.size or n_kv > self.size:
            raise ValueError("the GGUF header counts are larger than the file")
        self._metadata(n_kv)
        extents = [self._tensor() for _ in range(n_tensors)]
        self.tensor_count = n_tensors
        align = self._alignment()
        data_start = -(-self.f.tell() // align) * align
        for offset, n_bytes in extents:
            if data_start + offset + n_bytes > self.size:
                raise ValueError("the file is truncated: tensor data runs past the end of the file")
        if not self.str_field("general.architecture"):
            raise ValueError("no general.architecture key")

    @property
    def architecture(self) -> str:
        """general.architecture (a parsed header always has one)."""
        return str(self.fields["general.architecture"])

    def int_field(self, key: str) -> int | None:
        """Return an integer metadata value, or None when absent or not an integer."""
        value = self.fields.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def str_field(self, key: str) -> str | None:
        """Return a string metadata value, or None."""
        value = self.fields.get(key)
        return value if isinstance(value, str) else None


def _vocab_size(header: GGUFHeader) -> int | None:
    """Return the tokenizer's token count (or ``<arch>.vocab_size``)."""
    tokens = header.fields.get("tokenizer.ggml.tokens")
    if isinstance(tokens, _ArrayValue):
        return tokens.length
    return header.int_field(f"{header.architecture}.vocab_size")


def _open_gguf(path: Path) -> BinaryIO:
    """``path`` opened for reading after checking the magic; ModelNotFoundError or ModelCorruptError."""
    if not path.exists():
        raise ModelNotFoundError(path, f"{path}: model file not found")
    if not path.is_file():
        raise ModelNotFoundError(path, f"{path}: is not a regular file")
    try:
        f = path.open("rb")
    except OSError as exc:
        raise ModelNotFoundError(path, f"{path}: cannot read the model file ({exc})") from None
    magic = f.read(4)
    if magic != GGUF_MAGIC:
        f.close()
        what = "empty file" if not magic else f"starts with {magic!r}, not {GGUF_MAGIC!r}"
        raise ModelCorruptError(path, f"{path}: not a GGUF file ({what})")
    f.seek(0)
    return f


def read_header(path: Path) -> GGUFHeader:
    """The parsed GGUF header of ``path`` (no tensor data is read): the one front door to the parser.

    Raises ModelNotFoundError (missing, unreadable) or ModelCorruptError (not GGUF, damaged,
    truncated, tensor data past the end, no architecture).
    """
    reason: str | None = None
    with _open_gguf(path) as f:
        header = GGUFHeader(f, os.fstat(f.fileno()).st_size)
        try:
            header.parse()
        except _PARSE_ERRORS as exc:
            reason = str(exc) or type(exc).__name__
    if reason is not None:
        # Raised outside the except block: the low-level error is not chained to the message.
        raise ModelCorruptError(path, f"{path}: damaged or truncated GGUF file ({reason})")
    return header


def validate_gguf(path: Path) -> str:
    """Check ``path`` is a complete GGUF file; return its architecture (errors as :func:`read_header`).

    Whether llama.cpp knows the architecture is checked when loading (see inference.engine), so a
    newer llama.cpp architecture that gguf-py does not list yet is not refused here.
    """
    return read_header(path).architecture


def read_info(path: Path) -> ModelInfo:
    """What the GGUF file ``path`` says about itself, with its size and sha256 (errors as read_header)."""
    header = read_header(path)
    arch = header.architecture
    ftype = header.int_field("general.file_type")
    return ModelInfo(
        path=path,
        size_bytes=header.size,
        sha256=file_sha256(path),
        architecture=arch,
        name=header.str_field("general.name"),
        file_type=None if ftype is None else file_type_name(ftype),
        context_length=header.int_field(f"{arch}.context_length"),
        block_count=header.int_field(f"{arch}.block_count"),
        embedding_length=header.int_field(f"{arch}.embedding_length"),
        head_count=header.int_field(f"{arch}.attention.head_count"),
        vocab_size=_vocab_size(header),
        tensor_count=header.tensor_count,
        parameter_count=header.parameter_count,
    )


def _fmt_int(value: int | None) -> str:
    """Format an optional integer with thousands separators."""
    return "unknown" if value is None else f"{value:,}"


def _fmt_params(count: int) -> str:
    """Format a parameter count as ``2.61 B (2,614,341,888)``."""
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if count >= scale:
            return f"{count / scale:.2f} {unit} ({count:,})"
    return f"{count:,}"


def format_info(info: ModelInfo) -> str:
    """Return a readable multi-line description for ``meditron-bot model info``."""
    rows = [
        ("File", str(info.path)),
        ("Size", f"{info.size_bytes / 1e9:.2f} GB ({info.size_bytes:,} bytes)"),
        ("sha256", info.sha256),
        ("Name", info.name or "unknown"),
        ("Architecture", info.architecture),
        ("Quantization", info.file_type or "unknown"),
        ("Parameters", _fmt_params(info.parameter_count)),
        ("Tensors", _fmt_int(info.tensor_count)),
        ("Layers", _fmt_int(info.block_count)),
        ("Width", _fmt_int(info.embedding_length)),
        ("Heads", _fmt_int(info.head_count)),
        ("Vocabulary", _fmt_int(info.vocab_size)),
        ("Context", _fmt_int(info.context_length)),
    ]
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label + ':':<{width + 1}} {value}" for label, value in rows)
