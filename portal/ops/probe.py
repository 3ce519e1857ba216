"""The container health probe: ``python -m portal.ops.probe`` exits 0 when this host's ``/healthz`` answers.

Standard library only and no settings parsing, so a probe every few seconds costs a few milliseconds of
CPU. It speaks HTTPS when ``PORTAL_TLS_CERT_FILE`` is set (without checking the certificate: it talks
to itself on loopback, where a certificate for the public name would not match).
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.request
from collections.abc import Mapping

__all__ = ["main", "probe_url"]


def probe_url(environ: Mapping[str, str]) -> str:
    """The liveness URL of the server configured by ``environ``."""
    scheme = "https" if environ.get("PORTAL_TLS_CERT_FILE") else "http"
    return f"{scheme}://127.0.0.1:{environ.get('PORTAL_PORT', '8000')}/healthz"


def main(environ: Mapping[str, str] | None = None, timeout_s: float = 3.0) -> int:
    """Probe once; 0 when healthy, 1 otherwise (the reason on stderr)."""
    url = probe_url(os.environ if environ is None else environ)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=timeout_s, context=context) as response:  # noqa: S310
            if response.status == 200:
                return 0
            print(f"probe: {url} answered {response.status}", file=sys.stderr)
    except OSError as exc:
        print(f"probe: {url}: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
