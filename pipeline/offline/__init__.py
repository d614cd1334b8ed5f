"""Work on files and datasets rather than live streams: answering a file (`infer`), the tower-feature
cache, selector training (in one process or on Ray Train), evaluation on benchmarks, the side-by-side
comparison of compressors behind `omnisift bench`, and the synthetic task that proves training works.

Built on `pipeline.session` (files take exactly the streaming path) and on `omnisift.training`.
"""
