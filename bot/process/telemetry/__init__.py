"""Observability shared by every process: Prometheus metrics, /healthz and /readyz on METRICS_PORT."""
