# The kubetune operator image (also usable as a trial image: it carries the kubetune SDK).
#   docker build -t REGISTRY/kubetune:0.1.0 .
# Build stage: install kubetune with its operator extra (kopf, kubernetes, prometheus-client, aiohttp) and the optuna
# extra (the tpe and cmaes algorithms, which the operator runs) with their dependencies (wheels only) into a
# virtual environment.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/kubetune
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/kubetune/bin/pip install --only-binary=:all: --no-compile ".[operator,optuna]" \
 && /opt/kubetune/bin/python -m compileall -q /opt/kubetune/lib

# Final stage: the slim base, the virtual environment, a non-root user; no compilers, no pip cache, no sources.
FROM python:3.11-slim
RUN groupadd --gid 65532 kubetune \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin kubetune
COPY --from=build /opt/kubetune /opt/kubetune
# The root filesystem may be read-only (the chart mounts an emptyDir on /tmp): write nothing elsewhere.
ENV PATH=/opt/kubetune/bin:$PATH HOME=/tmp PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["kubetune", "operator"]
CMD ["--all-namespaces"]
