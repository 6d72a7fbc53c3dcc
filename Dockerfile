# One image for every role of the compose footprint (web, worker, runs-worker, beat, migrate):
# docker-compose.yml picks the command. Runs as the unprivileged user `kai`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin kai

COPY pyproject.toml README.md manage.py ./
COPY kai_platform ./kai_platform
COPY apps ./apps
COPY templates ./templates
COPY static ./static
RUN pip install . \
    && mkdir -p /app/var/media /app/var/static \
    && DJANGO_ENV=production SECRET_KEY=build-only-$(python -c "print('x' * 60)") ALLOWED_HOSTS=build \
       DATABASE_URL=postgres://build@localhost/build REDIS_URL=redis://localhost:6379/0 KAI_SECRET_KEYS= \
       python manage.py collectstatic --noinput -v 0 \
    && chown -R kai:kai /app/var

USER kai
EXPOSE 8000
# the web role's check; docker-compose.yml gives the workers one of their own
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=5 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=3)"
CMD ["python", "-m", "kai_platform.server", "-b", "0.0.0.0", "-p", "8000", "kai_platform.asgi:application"]
