"""Fixtures of the serve tests: the one headless Chromium fixture, shared with the dashboard tests."""

from tests.ray_pipeline.test_dashboard import browser  # noqa: F401 - shared fixture
