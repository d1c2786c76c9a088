# syntax=docker/dockerfile:1
# The openclaw-diagnostics service image.
#
#   docker build -t openclaw-diagnostics:0.1.0 .
#   docker run -p 127.0.0.1:8080:8080 -v openclaw-data:/var/lib/openclaw-diagnostics \
#     -e OPENCLAW_DIAG_HOST=0.0.0.0 -e OPENCLAW_DIAG_INGEST_TOKENS=change-me openclaw-diagnostics:0.1.0
#
# The image keeps the service's own default bind address (127.0.0.1): listening on every
# interface is an explicit choice made together with a token (docker-compose.yml does both).

# Override with a digest (python:3.11-slim@sha256:...) for byte-for-byte reproducible builds.
ARG PYTHON_IMAGE=python:3.11-slim

# --- build: turn the project and its dependencies into wheels, so the runtime stage carries
# neither sources nor build tooling.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY app ./app
COPY telemetry ./telemetry
RUN pip wheel --wheel-dir /wheels -c constraints.txt .

# --- runtime
FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OPENCLAW_DIAG_PORT=8080 \
    OPENCLAW_DIAG_DATA_DIR=/var/lib/openclaw-diagnostics

# A fixed numeric uid/gid, so volume ownership and runAsNonRoot checks do not depend on names.
# The data directory is created owned by that user before VOLUME: a new named volume is seeded
# from it and so starts out writable by the service.
RUN groupadd --system --gid 10001 openclaw \
    && useradd --system --uid 10001 --gid openclaw --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin openclaw \
    && install -d -o openclaw -g openclaw -m 0750 /var/lib/openclaw-diagnostics

COPY --from=build /wheels /tmp/wheels
RUN pip install --no-index --find-links=/tmp/wheels openclaw-diagnostics && rm -rf /tmp/wheels
COPY deploy/healthcheck.py /opt/openclaw/healthcheck.py

USER 10001:10001
WORKDIR /var/lib/openclaw-diagnostics
VOLUME ["/var/lib/openclaw-diagnostics"]
# OPENCLAW_DIAG_PORT: HTTP ingest, read API, /healthz, /readyz, /metrics.
EXPOSE 8080

# start-period covers restoring sessions from the journal on a restart.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/opt/openclaw/healthcheck.py"]

# Exec form: the service is PID 1 and gets SIGTERM itself, so shutdown flushes telemetry.
CMD ["openclaw-diagnostics", "serve"]
