# syntax=docker/dockerfile:1
# Stage 1: build the wheel. Stage 2: install it into a slim image and run as a non-root user.
FROM python:3.11-slim AS build
WORKDIR /src
RUN pip install --no-cache-dir build==1.2.2
COPY pyproject.toml README.md ./
COPY contracts ./contracts
COPY erp_backends ./erp_backends
COPY gateway ./gateway
COPY policies ./policies
RUN python -m build --wheel --outdir /dist

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ERPGW_SERVER__HOST=0.0.0.0 \
    ERPGW_SERVER__PORT=8080 \
    ERPGW_SAMPLE__PATH=/var/lib/erp-gateway/sample-erp.sqlite \
    ERPGW_IDEMPOTENCY__PATH=/var/lib/erp-gateway/idempotency.sqlite
COPY --from=build /dist/*.whl /tmp/
RUN pip install --no-cache-dir /tmp/*.whl && rm /tmp/*.whl \
    && groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin gateway \
    && mkdir -p /var/lib/erp-gateway && chown 10001:10001 /var/lib/erp-gateway
# Numeric, so the kubelet can verify runAsNonRoot without the image's /etc/passwd (deploy/).
USER 10001:10001
WORKDIR /var/lib/erp-gateway
VOLUME ["/var/lib/erp-gateway"]
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["erp-gateway", "serve"]
