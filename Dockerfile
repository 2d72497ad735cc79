# Runwire's image: the server installed from this repository, run as an unprivileged user.
# docker-compose.yml runs it as every role: `migrate`, API replicas (`serve`), `worker`.
#
# The base is pinned by its full version rather than by digest: no machine of this project
# reaches the image registry, so a digest could be neither resolved nor checked where this file
# is written and tested, and the official tag is rebuilt with Debian's security fixes, which a
# digest would hold back. Where builds must be reproducible to the byte, pin the digest there.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# Built in a stage of its own, so neither the sources nor the build's leftovers ship.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/runwire
WORKDIR /src
COPY pyproject.toml README.md ./
COPY server ./server
# Every dependency has a manylinux wheel, so no compiler is needed; no dev extras. setuptools
# only built the package; pip stays for images built FROM this one.
RUN /opt/runwire/bin/pip install --no-cache-dir . \
    && /opt/runwire/bin/pip uninstall --yes setuptools

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 runwire \
    && useradd --system --uid 10001 --gid runwire --home-dir /var/lib/runwire --create-home \
        --shell /usr/sbin/nologin runwire
COPY --from=build /opt/runwire /opt/runwire
# The data directory holds the embedded SQLite file, and the first admin token of whichever
# process starts first on an empty database: it must be somewhere the user can write.
ENV PATH=/opt/runwire/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    RUNWIRE_DATA_DIR=/var/lib/runwire/data
USER runwire
WORKDIR /var/lib/runwire
EXPOSE 8000
# No HEALTHCHECK here: the right probe depends on the role (`migrate` exits, `serve` and
# `worker` answer /ready), so docker-compose.yml sets one per service.
ENTRYPOINT ["runwire"]
# Alone, the image serves the embedded default (SQLite, in-process bus) on every interface.
CMD ["serve", "--host", "0.0.0.0"]
