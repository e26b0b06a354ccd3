# syntax=docker/dockerfile:1
# credyt-bridge in one small image: receiver, processor and deliverer in one process.
#
#   docker build -t credyt-bridge .
#   docker run -d --name credyt-bridge -p 8080:8080 --stop-timeout 30 \
#       -v credyt-bridge-data:/data -v "$PWD/config.yaml:/config/config.yaml:ro" \
#       -e CREDYT_API_KEY -e STRIPE_WEBHOOK_SECRET -e PADDLE_WEBHOOK_SECRET credyt-bridge
#
# Configuration: docs/configuration.md. Running it in production: docs/production.md.

# -- builder: the bridge and every dependency as wheels ---------------------------------
FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bridge ./bridge
COPY connectors ./connectors
RUN pip wheel --wheel-dir /wheels .

# -- runtime: those wheels installed, no build tools, no source, not root ---------------
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BRIDGE_CONFIG=/config/config.yaml \
    BRIDGE_DATABASE=/data/bridge.db
RUN groupadd --system --gid 10001 bridge \
    && useradd --system --uid 10001 --gid bridge --no-create-home --home-dir /data \
        --shell /usr/sbin/nologin bridge \
    && mkdir -p /data /config \
    && chown bridge:bridge /data
# The wheels are mounted for this one step, so they never become a layer of the image.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels credyt-bridge
# The example config (also inside the package) is the default; mount your own over it.
COPY bridge/config/config.example.yaml /config/config.yaml
WORKDIR /data
# Every webhook and adjustment lives in /data/bridge.db: keep it on a volume.
VOLUME ["/data"]
USER bridge
EXPOSE 8080
# Slim images have no curl: Python asks /healthz, bypassing any HTTP_PROXY in the env.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:8080/healthz', timeout=4)"]
# Exec form: credyt-bridge is PID 1 and receives SIGTERM itself. It stops accepting,
# finishes requests and in-flight deliveries (up to about 15 s), leaves the rest in the
# outbox and exits 0. Give it that long: `docker run --stop-timeout 30`.
STOPSIGNAL SIGTERM
ENTRYPOINT ["credyt-bridge"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
