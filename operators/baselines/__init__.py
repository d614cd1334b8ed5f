"""Baseline compressors in the operators' registry, one module each (importing this registers them):
`dycoke`, `timechat`, `omnizip`, `vidcom2`, and the ablations `stvp` (STVP alone) and `vgas` (VGAS
alone). `full`, `random` and `omnisift` live in `operators.compress`. Each module's docstring names its
paper and every deviation made to run it live."""

from operators.baselines import dycoke, omnizip, stvp, timechat, vgas, vidcom2

__all__ = ["dycoke", "omnizip", "stvp", "timechat", "vgas", "vidcom2"]
