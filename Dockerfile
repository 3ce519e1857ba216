# syntax=docker/dockerfile:1.7
# portal: multi-stage build. The builder installs the locked runtime dependencies and the app (not
# editable, no dev group) into /app/.venv with a pinned uv; the runtime image holds only that virtual
# environment, runs as an unprivileged user, and checks its own /healthz.
#
#   docker build -t portal --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) .
#   docker run --rm --env-file portal.env portal migrate     # once per release, before the servers
#   docker run -d -p 8000:8000 --env-file portal.env portal  # = portal serve

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.10

FROM ${UV_IMAGE} AS uv

FROM ${PYTHON_IMAGE} AS builder
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Dependencies first (a layer that changes only with uv.lock), then the project itself.
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-install-project
COPY portal ./portal
COPY migrations ./migrations
COPY templates ./templates
COPY static ./static
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable \
 && /app/.venv/bin/python -c "import portal.paths as p; assert p.MIGRATIONS_DIR.is_dir() and p.TEMPLATES_DIR.is_dir() and p.STATIC_DIR.is_dir()"

FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="portal" \
      org.opencontainers.image.description="Self-hosted LLM gateway with an operator portal" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 portal \
 && useradd --system --uid 10001 --gid portal --home-dir /app --shell /usr/sbin/nologin portal \
 && mkdir -p /data && chown portal:portal /data
WORKDIR /app
COPY --from=builder /app/.venv /app/.venv
ENV PATH="/app/.venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PORTAL_HOST=0.0.0.0 \
    PORTAL_PORT=8000 \
    PORTAL_DATA_DIR=/data
USER 10001:10001
EXPOSE 8000
VOLUME ["/data"]
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-m", "portal.ops.probe"]
# `docker run IMAGE migrate`, `docker run IMAGE keys list`, ...; the default is the server. On SIGTERM it
# finishes in-flight calls for up to PORTAL_SHUTDOWN_GRACE_S (30 s): give `docker stop -t` more than that.
ENTRYPOINT ["portal"]
CMD ["serve"]
