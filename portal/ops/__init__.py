"""Operations endpoints: liveness, readiness (and later Prometheus metrics)."""
