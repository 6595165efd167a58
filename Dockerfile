# The pipeline in a container, CPU only. The dependencies are read from pyproject.toml (no pin is
# repeated here) and installed before the code is copied, so a code change rebuilds only the last
# layers; torch comes from the CPU wheel index, not the multi-GB CUDA build.
#
#   docker build --build-arg DEID_COMMIT="$(git rev-parse HEAD)" -t deid .
#   docker run --rm -v "$PWD/work:/app/work" deid demo
#   docker run --rm -v "$PWD/work:/app/work" deid run configs/ferg.yaml --set audit.cnn_epochs=5
#
# Everything a run writes (data, Parquet, models, MLflow store, reports, releases) goes to /app/work:
# mount a host folder there with -v to keep it. The container runs as the user `deid` (uid 10001);
# a mounted folder must be writable by that uid.
FROM python:3.11-slim

ARG DEID_COMMIT=unknown
LABEL org.opencontainers.image.title="deid" \
      org.opencontainers.image.description="Batch de-identification of labelled face datasets, audited by attackers trained on the output" \
      org.opencontainers.image.revision="${DEID_COMMIT}"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DEID_COMMIT="${DEID_COMMIT}" \
    DEID_WORK=/app/work \
    MPLCONFIGDIR=/tmp/matplotlib \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    MLFLOW_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=1

WORKDIR /app

# 1. Dependencies only: the project's own list from pyproject.toml. pyproject's torch pin matches the CPU
#    index's <version>+cpu build, which pip prefers to the plain (CUDA) wheel of the same version.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# 2. The code, installed in place (configs/ are read beside it; the release owner names a policy with
#    DEID_RELEASE_POLICY, else the package's own applies), without touching the dependencies.
COPY README.md ./
COPY data_contracts ./data_contracts
COPY deid ./deid
COPY tasks ./tasks
COPY flows ./flows
COPY bench ./bench
COPY configs ./configs
RUN pip install --no-cache-dir --no-deps -e . \
 && useradd --create-home --uid 10001 --user-group deid \
 && mkdir -p /app/work \
 && chown deid:deid /app/work

USER 10001:10001
VOLUME ["/app/work"]

ENTRYPOINT ["deid"]
CMD ["demo"]
