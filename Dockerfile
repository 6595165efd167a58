# The pipeline in a container: installs the project from pyproject.toml (no pins repeated here)
# and runs the demo by default. Build: docker build -t deid .   Run: docker run --rm deid
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends git make && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY data_contracts ./data_contracts
COPY deid ./deid
COPY tasks ./tasks
COPY flows ./flows
COPY configs ./configs
RUN python -m pip install -q -U pip && python -m pip install -q -e .
ENV PREFECT_SERVER_ANALYTICS_ENABLED=false MLFLOW_DISABLE_TELEMETRY=true
CMD ["deid", "demo"]
