# Application image: the Temporal worker (`python worker.py`, the default), the webhook ingest
# service (`python webhook.py`) and the operator CLI (`python starter.py ...`, e.g.
# `python starter.py db upgrade`) share one image.
#
#   docker build -t trade-execution-orchestrator .
#
# Two stages: the first resolves dependencies from uv.lock with uv; the second copies only the
# resulting virtual environment and the source, so neither uv nor pip's caches ship.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build

# Pinned to the uv that created the development environment, so a rebuild reads uv.lock the same.
ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir "uv==${UV_VERSION}"

# Use the image's interpreter, never a downloaded one: the runtime stage has the same
# /usr/local/bin/python3.11 that the venv links to.
ENV UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1

WORKDIR /app
# Only the manifest and the lock: this layer is rebuilt when dependencies change, not on every
# source edit. --frozen installs exactly what uv.lock says; the project is not a package
# (tool.uv.package = false), so there is nothing of ours to install yet.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project


FROM ${PYTHON_IMAGE} AS runtime

ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# A fixed, numeric non-root uid so orchestrators (Kubernetes runAsNonRoot) can verify it.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin app

WORKDIR /app
COPY --from=build /app/.venv /app/.venv

# Source stays root-owned and read-only for the app user. Migrations ship inside
# orchestrator/adapters/db/migrations.
COPY orchestrator/ ./orchestrator/
COPY workflows/ ./workflows/
COPY activities/ ./activities/
COPY demo/ ./demo/
COPY worker.py starter.py webhook.py ./
# Our own bytecode too (the dependencies' is compiled by uv): the workflow sandbox re-imports a
# workflow's module for every run, and with PYTHONDONTWRITEBYTECODE and a read-only tree each
# re-import would otherwise compile the source again.
RUN python -m compileall -q orchestrator workflows activities demo worker.py starter.py webhook.py

# The embedded defaults (SQLite, `worker.py --dev`) write under .run/; compose points the app
# at PostgreSQL and a Temporal cluster instead, but the embedded mode still works in the image.
RUN mkdir -p /app/.run && chown 10001:10001 /app/.run

USER 10001:10001

# No init process needed: worker.py handles SIGTERM (docker stop) and SIGINT itself and shuts
# the Temporal worker down gracefully.
CMD ["python", "worker.py"]
