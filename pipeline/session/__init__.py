"""One live Qwen2.5-Omni context over one stream: chunks appended at their TMRoPE positions into a KV
cache, a sliding window, questions forked off and rolled back.

Plain PyTorch over `operators` (the per-chunk path) and `omnisift` (the model); imports no Ray, and of
`pipeline` only `pipeline.messages` (a question's `GenerationSettings`). The Ray model actor holds one
`OmniSession` per stream.
"""

from pipeline.session.session import ChunkTimings, OmniSession

__all__ = ["ChunkTimings", "OmniSession"]
