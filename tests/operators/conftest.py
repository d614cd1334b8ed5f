"""The operators' tests use the session's tiny Qwen2.5-Omni (`tiny_model_path`, tests/conftest.py)."""
