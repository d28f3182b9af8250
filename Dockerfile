# The engagement worker (and every `engagement` sub-command) as a container image.
# Used by docker-compose.yml; the local stack without Docker does not need it.
# The compiled replay core (native/, Rust) is not built here: `engagement replay` in this image
# runs the Python engine (same results, slower); the worker never uses the core.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY agents ./agents
RUN pip install . \
    && useradd --system --home-dir /var/lib/engagement --create-home engagement

USER engagement
WORKDIR /var/lib/engagement
# /metrics, /snapshot and /health of the worker.
EXPOSE 6066
CMD ["engagement", "worker"]
