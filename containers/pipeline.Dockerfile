# syntax=docker/dockerfile:1
# facesim pipeline image: every kfp step (the kfp SDK and all of facesim: steps launch TFJobs, Experiments and InferenceServices, build galleries).
# Build from the repository root (docs/cluster.md):
#   docker build -f containers/pipeline.Dockerfile -t REGISTRY/facesim-pipeline:TAG .
# Pinned base (exact tag; pin a digest with --build-arg PYTHON_IMAGE=python@sha256:... if your policy asks).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/home/facesim \
    FACESIM_HOME=/home/facesim/.facesim

# The non-root user every facesim pod runs as (runAsUser 1000 in the generated resources).
RUN groupadd --gid 1000 facesim \
    && useradd --uid 1000 --gid 1000 --create-home --home-dir /home/facesim --shell /bin/sh facesim

WORKDIR /opt/facesim
# Where pip finds packages: the package index, or the wheelhouse `facesim images build` prepares on
# the host and mounts (PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels: no network in the build).
ARG PIP_NO_INDEX
ARG PIP_FIND_LINKS
# Only this component's extra, at the versions tested together (constraints.txt). The dependencies
# come first, in a layer of their own: a change to facesim's sources reinstalls facesim alone.
COPY pyproject.toml constraints.txt containers/requirements.py ./
RUN python requirements.py pipeline > requirements.txt \
    && pip install --constraint constraints.txt --requirement requirements.txt
COPY README.md ./
COPY facesim ./facesim
COPY contract ./contract
COPY faces ./faces
COPY storage ./storage
COPY cluster ./cluster
COPY emulator ./emulator
COPY gallery ./gallery
COPY benchmarks ./benchmarks
COPY training ./training
COPY tuning ./tuning
COPY inference ./inference
COPY ui ./ui
COPY pipeline ./pipeline
RUN pip install --no-deps .

USER 1000:1000
# Not the source folder: there `import facesim` would find the sources, not the installed package.
WORKDIR /home/facesim
# A mirror of the YuNet weights (file:// too) and its sha256, else the published URL.
ARG FACESIM_YUNET_URL
ARG FACESIM_YUNET_SHA256
# YuNet weights in the image: the data and gallery steps need no download.
RUN python -c "import sys; from facesim.faces.detect import find_yunet_weights; sys.exit(find_yunet_weights() is None)"

CMD ["python", "-m", "facesim.pipeline", "--help"]
