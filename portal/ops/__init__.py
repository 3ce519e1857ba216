"""Operations: liveness and readiness, Prometheus metrics (multiprocess-safe), logging, config export."""
