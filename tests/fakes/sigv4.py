"""SigV4 verification for the fake Bedrock: recompute the signature with botocore and compare."""

from __future__ import annotations

import datetime
import hmac

from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]

from tests.fakes.server import Recorded

__all__ = ["SignatureProblem", "verify_sigv4"]

_MAX_SKEW = datetime.timedelta(minutes=15)


class SignatureProblem(Exception):
    """Why AWS would refuse the request: ``error_type`` is the ``x-amzn-ErrorType``."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


def _parse_authorization(value: str) -> dict[str, str]:
    algorithm, _, rest = value.partition(" ")
    if algorithm != "AWS4-HMAC-SHA256":
        raise SignatureProblem("IncompleteSignatureException", f"Unsupported signing algorithm {algorithm!r}")
    fields: dict[str, str] = {}
    for item in rest.split(","):
        key, _, val = item.strip().partition("=")
        fields[key] = val
    if not {"Credential", "SignedHeaders", "Signature"} <= set(fields):
        raise SignatureProblem(
            "IncompleteSignatureException",
            "Authorization header requires Credential, SignedHeaders, Signature",
        )
    return fields


def verify_sigv4(
    request: Recorded, credentials: dict[str, tuple[str, str | None]], region: str, service: str
) -> None:
    """Raise :class:`SignatureProblem` unless ``request`` is validly signed by one of ``credentials``."""
    authorization = request.headers.get("authorization")
    if not authorization:
        raise SignatureProblem("MissingAuthenticationTokenException", "Missing Authentication Token")
    fields = _parse_authorization(authorization)
    access_key, date, scope_region, scope_service, terminator = (fields["Credential"].split("/") + [""] * 5)[
        :5
    ]
    if access_key not in credentials:
        raise SignatureProblem(
            "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    secret, token = credentials[access_key]
    if token is not None and request.headers.get("x-amz-security-token") != token:
        raise SignatureProblem(
            "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    if scope_region != region or scope_service != service or terminator != "aws4_request":
        raise SignatureProblem(
            "InvalidSignatureException",
            f"Credential should be scoped to a valid region, not '{scope_region}'.",
        )
    timestamp = request.headers.get("x-amz-date", "")
    try:
        signed_at = datetime.datetime.strptime(timestamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        raise SignatureProblem("IncompleteSignatureException", "X-Amz-Date is missing or malformed") from None
    if date != timestamp[:8] or abs(datetime.datetime.now(datetime.UTC) - signed_at) > _MAX_SKEW:
        raise SignatureProblem("InvalidSignatureException", "Signature expired or date mismatch")
    signed = fields["SignedHeaders"].split(";")
    if "host" not in signed or any(name not in request.headers for name in signed):
        raise SignatureProblem(
            "InvalidSignatureException", "SignedHeaders must include host and only sent headers"
        )
    query = "&".join(f"{k}={v}" for k, v in request.query.items())
    url = f"http://{request.headers['host']}{request.raw_path}" + (f"?{query}" if query else "")
    aws_request = AWSRequest(
        method=request.method,
        url=url,
        data=request.body,
        headers={name: request.headers[name] for name in signed},
    )
    aws_request.context["timestamp"] = timestamp
    signer = SigV4Auth(Credentials(access_key, secret, token), service, region)
    canonical = signer.canonical_request(aws_request)
    expected = signer.signature(signer.string_to_sign(aws_request, canonical), aws_request)
    if not hmac.compare_digest(expected, fields["Signature"]):
        raise SignatureProblem(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. Check your AWS "
            "Secret Access Key and signing method. Consult the service documentation for details.",
        )
