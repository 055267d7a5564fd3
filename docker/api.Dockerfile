# The API image: FastAPI, the Redis client, Pillow and boto3; the base install of pyproject.toml, no torch,
# so it stays small. Build from the repository root: docker build -f docker/api.Dockerfile .
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# tini is PID 1: it forwards SIGTERM to uvicorn and reaps zombies.
RUN apt-get update && apt-get install -y --no-install-recommends tini && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY nst_shared ./nst_shared
COPY service ./service
COPY nst_core ./nst_core
COPY worker ./worker
COPY nst_cli ./nst_cli
COPY nst_client ./nst_client
COPY examples ./examples
# Editable: the code runs from /app as laid out in the repository, where the web page's static files and
# examples/ sit beside the packages (a wheel would leave them out); the native test runs the same layout.
RUN pip install -e ".[s3]"
# Checked at build time: the app imports without torch, and torch is not installed at all.
RUN python -c "import sys, service.app; assert 'torch' not in sys.modules, 'the API imported torch'" \
 && ! pip show --quiet torch 2>/dev/null

# A non-root user; /data/storage is the shared volume's mount point, owned by the same uid in both images,
# so a fresh named volume starts writable for the API and the workers.
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/nst nst \
 && mkdir -p /data/storage && chown -R 10001:10001 /data
USER 10001:10001
ENV NST_STORAGE_DIR=/data/storage
EXPOSE 8000
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["uvicorn", "--factory", "service.app:create_app", "--host", "0.0.0.0", "--port", "8000", "--no-access-log", "--no-proxy-headers"]
