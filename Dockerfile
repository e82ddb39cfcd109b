# The Conveyor image: web, worker pools and scheduler all run from it (see docker-compose.yml).
FROM python:3.12-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 UV_PROJECT_ENVIRONMENT=/opt/venv PATH=/opt/venv/bin:$PATH
RUN pip install --no-cache-dir uv && useradd --create-home --uid 10001 conveyor
WORKDIR /app
COPY pyproject.toml uv.lock ./
# Runtime dependencies only: not the dev group, nor the `local` one (the embedded PostgreSQL
# of `make run`); production sets DATABASE_URL and REDIS_URL and refuses to start without them.
RUN uv sync --frozen --no-dev --no-install-project
COPY . .
USER conveyor
EXPOSE 8000
CMD ["bin/run-process", "web"]
