# One image for every Beliefscope service: the server, the one-shot migration, the ingest
# watcher and the Dask scheduler and workers (the `cluster` extra is installed).
#
#   docker build -t beliefscope .                                     # CPU torch (default)
#   docker build --build-arg TORCH_INDEX=cu126 -t beliefscope:cuda .   # a CUDA build of torch
#
# No secrets go into the image: the store URL and the database password come from the
# environment at run time (see docker-compose.yml and docs/deploying.md).
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim-bookworm

ARG TORCH_VERSION=2.13.0
# a wheel index of download.pytorch.org/whl: cpu (default), or a CUDA one such as cu126
ARG TORCH_INDEX=cpu
ARG EXTRAS=cluster

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MUJOCO_GL=egl \
    BELIEFSCOPE_HOME=/var/lib/beliefscope \
    BELIEFSCOPE_HOST=0.0.0.0 \
    BELIEFSCOPE_PORT=8050

# EGL for offscreen MuJoCo rendering (the truth view), GL and glib for OpenCV
RUN apt-get update \
 && apt-get install -y --no-install-recommends libegl1 libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 beliefscope \
 && useradd --system --uid 10001 --gid beliefscope --create-home \
      --home-dir /var/lib/beliefscope beliefscope

WORKDIR /opt/beliefscope

# Dependencies first, from pyproject.toml alone: source edits don't rebuild this layer.
COPY pyproject.toml ./
RUN pip install "torch==${TORCH_VERSION}" --index-url "https://download.pytorch.org/whl/${TORCH_INDEX}" \
 && python -c "import sys, tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; extras = [e for e in sys.argv[1].split(',') if e]; print('\n'.join(p['dependencies'] + [d for e in extras for d in p['optional-dependencies'][e]]))" "${EXTRAS}" > /tmp/requirements.txt \
 && echo "torch==${TORCH_VERSION}" > /tmp/constraints.txt \
 && pip install -c /tmp/constraints.txt -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt /tmp/constraints.txt

# Then the source, installed without touching the dependencies above.
COPY README.md ./
COPY beliefscope ./beliefscope
COPY ingest ./ingest
COPY server ./server
COPY dashboard ./dashboard
RUN pip install --no-deps ".[${EXTRAS}]" \
 && rm -rf /opt/beliefscope/build

USER beliefscope
WORKDIR /var/lib/beliefscope
EXPOSE 8050

HEALTHCHECK --interval=30s --timeout=5s --start-period=40s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('BELIEFSCOPE_PORT', '8050'), timeout=4)"]

CMD ["beliefscope", "serve"]
