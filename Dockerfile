# The incidents app as a container image: `incidents serve` by default, `incidents worker` or any other
# `incidents` command by passing it as arguments (the entrypoint is `incidents`).
#
#   docker build -t incidents .
#   docker run -e INCIDENTS_DATABASE_URL=postgresql://... -e INCIDENTS_SECRET_KEY=... -p 8000:8000 incidents
#   docker run --rm ... incidents users create admin@example.com --name Admin --role admin
#
# Written for the legacy builder as well as BuildKit (Debian's docker.io has no buildx): no RUN --mount, no
# heredocs. deploy/test-image builds and runs it for real; deploy/compose.yaml runs it with PostgreSQL and Redis.

# Any Debian bookworm image with python3 (3.11+) and python3-venv works. The official slim image is the default;
# bookworm matters: its postgresql-client-15 matches the PostgreSQL 15 server (see PG_MAJOR below).
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---- build: the app and its dependencies in a virtualenv (/opt/incidents), copied whole into the final stage.
FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/incidents
WORKDIR /src
# Dependencies first, from pyproject.toml alone, so that a change to the code does not download them again.
COPY pyproject.toml /src/
RUN python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && /opt/incidents/bin/pip install -r /tmp/requirements.txt
# Then the app itself, a regular (non-editable) install: templates, static files, migrations and config travel
# inside the package, so /src is not needed at run time.
COPY . /src
RUN /opt/incidents/bin/pip install --no-deps /src \
    && /opt/incidents/bin/python -m compileall -q /opt/incidents/lib

# ---- final: the virtualenv, the PostgreSQL client, an unprivileged user and a volume for the instance folder.
FROM ${BASE_IMAGE}
# pg_dump must be of the server's major version (pg_dump refuses servers newer than itself, and an older
# server's dumps are best taken by the matching version): postgresql-client-15 for PostgreSQL 15. Bookworm ships
# exactly 15; on another release, or for another server version, add the PGDG apt repository and set PG_MAJOR.
ARG PG_MAJOR=15
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "postgresql-client-${PG_MAJOR}" \
    && rm -rf /var/lib/apt/lists/* \
    && pg_dump --version | grep -q " ${PG_MAJOR}\." \
    && groupadd --system --gid 10001 incidents \
    && useradd --system --uid 10001 --gid incidents --home-dir /var/lib/incidents --no-create-home \
        --shell /usr/sbin/nologin incidents \
    && mkdir -p /var/lib/incidents \
    && chown incidents:incidents /var/lib/incidents \
    && chmod 0750 /var/lib/incidents
COPY --from=build /opt/incidents /opt/incidents

# INCIDENTS_INSTANCE_PATH: the generated secret key (when INCIDENTS_SECRET_KEY is not set) and, without
# INCIDENTS_DATABASE_URL / INCIDENTS_QUEUE_URL, the SQLite database and queue. A named volume mounted there starts
# owned by the app user; a bind-mounted directory must be writable by uid 10001.
# INCIDENTS_PORT: the port the health check asks; set it whenever `serve --port` is not 8000.
ENV PATH=/opt/incidents/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    INCIDENTS_INSTANCE_PATH=/var/lib/incidents \
    INCIDENTS_PORT=8000
VOLUME ["/var/lib/incidents"]
WORKDIR /var/lib/incidents
USER 10001:10001
EXPOSE 8000

# /healthz answers 200 when the app can query its database, 503 when it cannot. Python, because the slim image
# has no curl; urlopen raises (exit 1) on a refused connection, a timeout or any status >= 400.
# A worker container serves no HTTP: run it with --no-healthcheck (deploy/compose.yaml disables it).
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('INCIDENTS_PORT', '8000'), timeout=4)"]

ENTRYPOINT ["incidents"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
