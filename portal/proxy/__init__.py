"""The OpenAI-compatible proxy: ``/v1`` handlers, key auth, routing and provider adapters."""
