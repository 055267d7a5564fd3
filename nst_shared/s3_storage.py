"""Job files in an S3-compatible bucket (AWS S3, MinIO): `s3://bucket/prefix/<job id>/<name>`.

Credentials come the standard boto3 ways (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile, an
instance role); the endpoint (MinIO) and region come from the settings."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from nst_shared.storage import check_key

_MISSING = {"404", "NoSuchKey", "NotFound"}


class S3Storage:
    """The `Storage` interface over one bucket and key prefix. PUTs are atomic in S3: no half files."""

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 10.0,
        max_attempts: int = 3,
    ) -> S3Storage:
        """`s3://bucket/prefix`; a custom endpoint (MinIO) also gets path-style addressing. A call takes at
        most about `max_attempts` x (`connect_timeout_s` + `read_timeout_s`) plus botocore's backoff."""
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"not an s3://bucket/prefix URL: {url!r}")
        config = Config(
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            retries={"total_max_attempts": max_attempts, "mode": "standard"},
            s3={"addressing_style": "path" if endpoint_url else "auto"},
        )
        client = boto3.session.Session().client("s3", endpoint_url=endpoint_url, region_name=region, config=config)
        return cls(client, parsed.netloc, parsed.path)

    def key(self, job_id: str, name: str) -> str:
        check_key(job_id, name)
        return f"{self.prefix}{job_id}/{name}"

    def put(self, job_id: str, name: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.key(job_id, name), Body=data)

    def get(self, job_id: str, name: str) -> bytes | None:
        try:
            reply = self.client.get_object(Bucket=self.bucket, Key=self.key(job_id, name))
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise
        body: bytes = reply["Body"].read()
        return body

    def exists(self, job_id: str, name: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.key(job_id, name))
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return False
            raise
        return True

    def delete_job(self, job_id: str) -> None:
        keys = [item["Key"] for item in self._objects(self.key(job_id, "x")[:-1])]
        for start in range(0, len(keys), 1000):  # DeleteObjects takes 1000 keys at most
            self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in keys[start : start + 1000]], "Quiet": True}
            )

    def job_ids(self) -> list[str]:
        ids = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix, Delimiter="/"
        ):
            for common in page.get("CommonPrefixes", []):
                ids.append(common["Prefix"][len(self.prefix) :].rstrip("/"))
        return ids

    def modified_at(self, job_id: str) -> float | None:
        times = [item["LastModified"].timestamp() for item in self._objects(self.key(job_id, "x")[:-1])]
        return max(times) if times else None

    def _objects(self, prefix: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            items.extend(page.get("Contents", []))
        return items


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
