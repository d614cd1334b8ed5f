"""Per-chunk stages between ingestion and the model, each a small stateful object with
`process()` and `reset()`: preprocess (patches, log-mel), encode (the towers), compress (a registry), and
`Compression`, the one way from a compressor name, retention or ratios and options to a stream's compressor.

May import `omnisift` and `streams` (the chunk type); never Ray or `pipeline`."""

from operators import baselines  # noqa: F401 - registers the baseline compressors
from operators.chunk_encoder import ChunkEncoder, encode_many
from operators.chunks import CompressedChunk, EncodedChunk, PreprocessedChunk
from operators.compress import (
    COMPRESSORS,
    Compressor,
    make_compressor,
    register_compressor,
)
from operators.compression import Compression
from operators.encode import Encoder
from operators.preprocess import Preprocessor

__all__ = [
    "COMPRESSORS", "ChunkEncoder", "CompressedChunk", "Compression", "Compressor", "EncodedChunk", "Encoder",
    "PreprocessedChunk",
    "Preprocessor", "encode_many", "make_compressor", "register_compressor",
]
