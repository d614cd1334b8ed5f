"""What machine a measurement ran on, written beside every benchmark figure."""

from __future__ import annotations

import datetime as dt
import os
import platform
from pathlib import Path

import torch


def machine() -> dict:
    """CPU model, cores, torch version and threads, date."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu, "logical_cores": os.cpu_count(), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(), "python": platform.python_version(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
