# kafka-chargeback: the `chargeback` command in a small image (docs/docker.md).
#
#   docker build -t kafka-chargeback .
#   docker run --rm kafka-chargeback --help
#
# Every dependency ships manylinux wheels (duckdb, confluent-kafka with librdkafka inside, pyarrow,
# orjson), so no compiler is needed. The project is built into a wheel in a throwaway stage, so the
# final image holds neither the source tree nor pip's build tools.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY . .
# The same as `pip install .`, in two steps: the project's wheel here, its install below.
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1

# A non-root user, uid/gid 1000 by default: the usual first user on a Linux host, so the CSVs
# written into a bind-mounted ./exports are yours. To match another account, build with
#   --build-arg APP_UID=$(id -u) --build-arg APP_GID=$(id -g)
ARG APP_UID=1000
ARG APP_GID=1000
RUN groupadd --gid "${APP_GID}" chargeback \
 && useradd --uid "${APP_UID}" --gid "${APP_GID}" --no-create-home --home-dir /data \
      --shell /usr/sbin/nologin chargeback \
 && mkdir -p /data /exports /config \
 && chown chargeback:chargeback /data /exports

COPY --from=build /wheels /tmp/wheels
RUN pip install /tmp/wheels/*.whl && rm -rf /tmp/wheels

# The store, its published read copy (chargeback.read.duckdb) and rates.toml live together here;
# mount a volume on it. A new named volume takes this folder's owner, so the service can write.
ENV CHARGEBACK_DB=/data/chargeback.duckdb
VOLUME ["/data"]
WORKDIR /data
USER chargeback

ENTRYPOINT ["chargeback"]
CMD ["ingest"]
