# The hashstream service image: API (`hashstream serve --workers 0`) or a round worker
# (`hashstream worker`), both wired to Redis by REDIS_URL.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY hashstream ./hashstream
RUN pip install --no-cache-dir .
EXPOSE 8000
CMD ["hashstream", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "0"]
