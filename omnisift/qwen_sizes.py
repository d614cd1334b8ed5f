"""Sizes of the real Qwen2.5-Omni-7B (from its published config), for benchmarks and budgets that must
reflect the real model rather than the tiny one tests load."""

HIDDEN_7B = 3584  # language model width: every audio/video token reaching the LLM has this size
