"""portal: a self-hosted LLM gateway with an operator portal.

The package has no I/O at import time; build the application with :func:`portal.app.create_app`.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
