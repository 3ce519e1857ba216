"""Drop-in compatible admin surfaces (COO-LLM, LiteLLM, LLM Server): thin adapters onto the
domain services."""
