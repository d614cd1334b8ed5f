# OmniSIFT Stream: one image for the Ray head, Ray workers and the application (docker-compose.yml).
# CPU-only hosts run it as is; on a GPU host the NVIDIA container toolkit exposes the GPU and the
# default PyTorch wheels (CUDA bundled) use it.
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HOME=/cache/huggingface

# ffmpeg: webcam/microphone capture and the FFmpeg-backed decoders; tini reaps Ray's child processes
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg tini \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# exactly the tested versions (README "Install"), then the project without resolving anything
COPY requirements/main.lock ./requirements/main.lock
RUN pip install --require-hashes -r requirements/main.lock
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY operators ./operators
COPY omnisift ./omnisift
COPY pipeline ./pipeline
COPY configs ./configs
RUN pip install --no-deps --no-build-isolation .

# 5560 PUB (answers, alerts, stats), 5561 REP (questions), 9464 Prometheus, 6379 Ray GCS, 8265 Ray dashboard
EXPOSE 5560 5561 9464 6379 8265
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["omnisift", "run", "configs/compose.yaml"]
