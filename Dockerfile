# The hashstream service image: API (`hashstream serve --workers 0`) or a round worker
# (`hashstream worker`), both wired to Redis by REDIS_URL.

# --- builder: compile the C Hamming kernel into a wheel -----------------------------------
FROM python:3.11-slim AS builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY hashstream ./hashstream
# The extension is optional in pyproject (a compiler-less install falls back to NumPy), so
# fail the build here if the wheel came out without it.
RUN pip wheel --no-cache-dir --no-deps -w /wheels . \
    && python -c "import glob, sys, zipfile; \
names = zipfile.ZipFile(glob.glob('/wheels/hashstream-*.whl')[0]).namelist(); \
sys.exit(0 if any(n.startswith('hashstream/hamming/_hamming') and n.endswith('.so') \
for n in names) else 'the wheel has no compiled Hamming kernel')"

# --- runtime ------------------------------------------------------------------------------
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# The CPU build of torch first: from PyPI, an unpinned torch is a multi-GB CUDA build. The
# wheel's own `torch>=2.2` is then already satisfied.
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY --from=builder /wheels /wheels
RUN pip install --no-cache-dir /wheels/hashstream-*.whl && rm -rf /wheels
RUN useradd --create-home --uid 10001 hashstream \
    && mkdir /app && chown hashstream:hashstream /app
USER hashstream
# Without REDIS_URL, `serve` keeps its embedded Redis in ./hashstream-data: writable here.
WORKDIR /app
EXPOSE 8000
# Liveness of the API (/healthz needs no API key); the worker service defines its own check.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"
CMD ["hashstream", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "0"]
