# The bank's worker. Configure it by environment (see README): KAFKA_BROKER,
# BANKING_WEB_HOST (the name other workers reach this one by), BANKING_PARTITIONS.
FROM python:3.11-slim

# jemalloc: the worker executes itself on it (banking_app/operations/allocator.py).
RUN apt-get update && apt-get install -y --no-install-recommends libjemalloc2 \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 10001 bank
WORKDIR /app
COPY pyproject.toml README.md ./
COPY banking_app ./banking_app
RUN pip install --no-cache-dir . && mkdir -p /var/lib/banking && chown bank /var/lib/banking

USER bank
ENV KAFKA_BROKER=kafka://kafka:9092 \
    BANKING_DATA_DIR=/var/lib/banking \
    BANKING_WEB_PORT=6066
EXPOSE 6066
VOLUME ["/var/lib/banking"]
CMD ["banking-app", "worker", "-l", "info"]
