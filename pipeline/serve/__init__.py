"""The network faces of a running pipeline: ZeroMQ PUB (events) and REP (questions), Prometheus metrics,
the HTTP API and dashboard (`http/`, `static/`, docs/http-api.md), and what outlives an event: the
history (`history`, SQLite), alert clips (`clips`, MP4 + JSON) and webhooks (`webhooks`).

They know the pipeline only through `pipeline.config`, `pipeline.messages` and the few async methods
of the stream object handed to them (`ask`, `snapshot`, ...); they import no Ray and no torch, so they
are tested with plain sockets.
"""
