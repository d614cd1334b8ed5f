"""Stand-alone benchmarks, each run as `python -m benchmarks.<name>` from the repository root: it builds its
own inputs, times the project's code next to a reference implementation in the same process (medians of
several runs, after a warm-up), checks that both decide the same, and prints a markdown table for
BENCHMARKS.md. Nothing here is imported by the library or asserted by the tests."""
