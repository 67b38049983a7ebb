"""Reference servers the gateway is measured against, under the same gunicorn configuration."""
