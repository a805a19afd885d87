# One image for every conveyor process: the API (default), workers, migrations.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . && useradd --system --uid 10001 --no-create-home conveyor

USER conveyor
# Inside a container the API must listen beyond loopback to be reachable.
ENV CONVEYOR_HOST=0.0.0.0 \
    CONVEYOR_LOG_FORMAT=json
EXPOSE 3000
CMD ["conveyor", "api"]
