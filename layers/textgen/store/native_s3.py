"""The model store's S3 requests through AWS's Common Runtime (awscrt): objects read into memory
or downloaded straight to a file, and the names under a prefix listed.

Why not boto3 here: on a cold start its import and client take 0.2-0.3 s of the GIL, which the
handler's own imports then wait for, and its transfer manager hands every chunk through Python
threads. The CRT (the engine of the AWS CLI's and boto3's own fast transfers) signs, retries and
downloads ranged parts on native threads, writing them to the file itself, and imports in about
0.06 s (docs/performance.md). `textgen publish` and the Batch API keep boto3.

Credentials come from the standard chain (the environment first, as Lambda provides them), the
region from AWS_REGION or AWS_DEFAULT_REGION, and an S3-compatible server's address from
AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, as boto3 reads them (such a server is addressed path
style).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit
from xml.etree import ElementTree

from awscrt.auth import AwsCredentialsProvider
from awscrt.exceptions import AwsCrtError
from awscrt.http import HttpHeaders, HttpRequest
from awscrt.io import ClientBootstrap, DefaultHostResolver, EventLoopGroup
from awscrt.s3 import (
    S3Client,
    S3RequestTlsMode,
    S3RequestType,
    S3ResponseError,
    S3RetryConfig,
    create_default_s3_signing_config,
)

from textgen.settings import Settings

_S3_XML = "{http://s3.amazonaws.com/doc/2006-03-01/}"
# CRT errors that mean no answer came from the endpoint at all.
_UNREACHABLE = (
    "AWS_IO_SOCKET_CONNECTION_REFUSED",
    "AWS_IO_SOCKET_TIMEOUT",
    "AWS_IO_SOCKET_NO_ROUTE_TO_HOST",
    "AWS_IO_SOCKET_NETWORK_DOWN",
    "AWS_IO_DNS_INVALID_NAME",
    "AWS_IO_DNS_QUERY_FAILED",
    "AWS_IO_DNS_NO_ADDRESS_FOR_HOST",
)


class S3RequestFailed(Exception):
    """An S3 request that failed: with the service's error code (NoSuchKey, AccessDenied, ...)
    where it answered, or `unreachable` where no answer came."""

    def __init__(self, message: str, code: str = "", unreachable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.unreachable = unreachable


@dataclass(frozen=True)
class Endpoint:
    """Where requests go: AWS's regional endpoint (virtual-host style) or an S3-compatible
    server's address (path style)."""

    host: str  # with its port where it has one
    tls: bool
    path_style: bool

    @classmethod
    def from_environment(cls, region: str) -> Endpoint:
        url = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if not url:
            return cls(f"s3.{region}.amazonaws.com", tls=True, path_style=False)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"the S3 endpoint {url!r} is not an http(s) URL")
        return cls(parts.netloc, tls=parts.scheme == "https", path_style=True)

    def address(self, bucket: str, key: str = "") -> tuple[str, str]:
        """The Host header and the path of an object (or of the bucket, for a listing)."""
        path = "/" + quote(key, safe="/-_.~")
        # A dotted bucket name would not match the wildcard certificate as a host name.
        if self.path_style or "." in bucket:
            return self.host, f"/{bucket}{path if key else ''}"
        return f"{bucket}.{self.host}", path


class NativeS3:
    """GetObject and ListObjectsV2 through one CRT client: `part_size` bytes per ranged GET,
    `connections` at a time per object, each request tried up to `attempts` times."""

    def __init__(
        self, region: str, endpoint: Endpoint, part_size: int, connections: int, attempts: int
    ) -> None:
        events = EventLoopGroup()
        bootstrap = ClientBootstrap(events, DefaultHostResolver(events))
        credentials = AwsCredentialsProvider.new_default_chain(bootstrap)
        self.endpoint = endpoint
        self._client = S3Client(
            bootstrap=bootstrap,
            region=region,
            signing_config=create_default_s3_signing_config(
                region=region, credential_provider=credentials
            ),
            tls_mode=S3RequestTlsMode.ENABLED if endpoint.tls else S3RequestTlsMode.DISABLED,
            part_size=part_size,
            # The buffers of the parts in flight; at least the CRT's own floor (2 GiB).
            memory_limit=max(2 << 30, 2 * part_size * connections),
            max_active_connections_override=connections,
            retry_config=S3RetryConfig(max_retries=max(attempts - 1, 1)),
        )

    @classmethod
    def for_settings(cls, settings: Settings) -> NativeS3:
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        region = region or "us-east-1"
        return cls(
            region,
            Endpoint.from_environment(region),
            part_size=settings.s3_part_size_mb * 1024 * 1024,
            connections=settings.s3_max_concurrency,
            attempts=settings.s3_max_attempts,
        )

    def read(self, bucket: str, key: str) -> bytes:
        """A (small) object's bytes."""
        chunks: list[tuple[int, bytes]] = []
        self._request(S3RequestType.GET_OBJECT, bucket, key, on_body=_collect(chunks))
        return _joined(chunks)

    def download(self, bucket: str, key: str, destination: Path) -> None:
        """An object written to `destination` by the CRT's own threads."""
        self._request(S3RequestType.GET_OBJECT, bucket, key, recv_filepath=str(destination))

    def common_prefixes(self, bucket: str, prefix: str) -> list[str]:
        """The "folders" right under `prefix` (ListObjectsV2 with delimiter '/'), every page."""
        found: list[str] = []
        token = ""
        while True:
            query = {"list-type": "2", "prefix": prefix, "delimiter": "/"}
            if token:
                query["continuation-token"] = token
            chunks: list[tuple[int, bytes]] = []
            self._request(
                S3RequestType.DEFAULT, bucket, "", query, on_body=_collect(chunks), listing=True
            )
            page = ElementTree.fromstring(_joined(chunks))
            found += [
                element.text or ""
                for element in page.iterfind(f"{_S3_XML}CommonPrefixes/{_S3_XML}Prefix")
            ]
            token = page.findtext(f"{_S3_XML}NextContinuationToken") or ""
            if page.findtext(f"{_S3_XML}IsTruncated") != "true" or not token:
                return found

    def _request(
        self,
        kind: S3RequestType,
        bucket: str,
        key: str,
        query: dict[str, str] | None = None,
        listing: bool = False,
        **options: Any,
    ) -> None:
        host, path = self.endpoint.address(bucket, key)
        if query:
            path += "?" + urlencode(query)
        request = HttpRequest("GET", path, HttpHeaders([("Host", host)]))
        operation = {"operation_name": "ListObjectsV2"} if listing else {}
        try:
            self._client.make_request(
                type=kind, request=request, **operation, **options
            ).finished_future.result()
        except S3ResponseError as exc:
            code = _error_code(exc.body) or str(exc.status_code or "")
            raise S3RequestFailed(f"{code}: {exc.message}", code) from exc
        except AwsCrtError as exc:
            if exc.name == "AWS_ERROR_NO_SPACE":  # the disk cache says what a full disk means
                raise OSError(errno.ENOSPC, exc.message) from exc
            unreachable = exc.name in _UNREACHABLE
            raise S3RequestFailed(f"{exc.name}: {exc.message}", unreachable=unreachable) from exc


def _collect(chunks: list[tuple[int, bytes]]) -> Callable[..., None]:
    def on_body(chunk: Any, offset: int, **_: Any) -> None:
        chunks.append((offset, bytes(chunk)))

    return on_body


def _joined(chunks: list[tuple[int, bytes]]) -> bytes:
    return b"".join(chunk for _, chunk in sorted(chunks, key=lambda item: item[0]))


def _error_code(body: bytes | None) -> str:
    """The <Code> of an S3 error answer's XML, if it has one."""
    if not body:
        return ""
    try:
        return ElementTree.fromstring(body).findtext("Code") or ""
    except ElementTree.ParseError:
        return ""
