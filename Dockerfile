# The engagement worker (and every `engagement` sub-command) as a container image.
# Used by docker-compose.yml; the local stack without Docker does not need it.
#
# Two stages. `core` compiles the Rust core (native/: the live worker's partitions and
# `engagement replay`) into a wheel with maturin, against Debian bookworm's CPython 3.11, the
# same minor version and C library as the runtime image. The runtime stage installs the
# project and that wheel; no Rust toolchain is left in it. The worker says at start which
# engine runs ("engine: the compiled core"); both engines give the same results.

FROM rust:1.95-slim-bookworm AS core
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/build \
    && /opt/build/bin/pip install --no-cache-dir "maturin>=1.7,<2"
WORKDIR /src
COPY native ./native
RUN /opt/build/bin/maturin build --release --manifest-path native/Cargo.toml \
        --interpreter python3 --out /wheels

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY sdk ./sdk
COPY streams ./streams
COPY agents ./agents
COPY engagement_cli ./engagement_cli
COPY --from=core /wheels /wheels
RUN pip install ./sdk . /wheels/engagement_native-*.whl \
    && rm -rf /wheels \
    && python -c "from streams.native_live import available; assert available()" \
    && useradd --system --home-dir /var/lib/engagement --create-home engagement

USER engagement
WORKDIR /var/lib/engagement
# /metrics, /snapshot and /health of the worker.
EXPOSE 6066
CMD ["engagement", "worker"]
