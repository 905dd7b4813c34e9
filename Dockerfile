# The web app as a container image: `digits serve` with the model shipped in the package.
#
#   docker build -t digit-recognizer .
#   docker run --rm -p 8000:8000 digit-recognizer                  # http://localhost:8000/
#   docker run --rm -p 8000:8000 -e DIGITS_API_KEY=... digit-recognizer --workers 2
#
# Arguments after the image name go to `digits serve`. The container is stateless:
# run N of them behind a load balancer (docs/scaling.md).

# A pinned base: the same Python and Debian release on every build.
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The server runs as a user without privileges, not as root.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin digits

WORKDIR /opt/digit-recognizer
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
# The serve extra only; the shipped model comes with the package (its package data).
RUN pip install ".[serve]" && rm -rf src

USER digits
EXPOSE 8000

# Ready (model loaded, prediction workers up), asked with the image's own Python: slim has no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/ready', timeout=4)"]

# SIGTERM (docker stop, Kubernetes) stops it gracefully: requests in flight are answered first.
STOPSIGNAL SIGTERM
ENTRYPOINT ["digits", "serve", "--host", "0.0.0.0", "--port", "8000"]
CMD []
