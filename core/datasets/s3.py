"""The S3 storage backend (boto3), and reading S3-sourced datasets.

Connection details (endpoint, bucket, region, access key) are one platform secret, `dataset-s3`, in the
secrets store, never a setting: `S3Connection.from_secret` reads it and its `repr` hides the secret
key. An upload is an S3 multipart upload of `datasets/<dataset id>/<file name>` whose parts the client
PUTs straight to presigned URLs; the API only starts it, lists the parts already there (so a client
resumes), and completes it. Every S3 error is mapped once here: a missing bucket or refused
credentials is `StorageRefusedError` with the fix in words, anything a retry may cure is
`StorageUnavailableError`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from remotegpu.core.datasets.s3_urls import S3Location
from remotegpu.core.datasets.storage import (
    StorageRefusedError,
    StorageUnavailableError,
    StoredContent,
    sha256_of,
)
from remotegpu.core.platform.errors import ConflictError
from remotegpu.core.secrets.store import PLATFORM, SecretPath, SecretStore

S3_SECRET = SecretPath(PLATFORM, "dataset-s3")
"""The platform secret holding the S3 connection as JSON."""
PRESIGN_SECONDS = 3600
_READ_BYTES = 1 << 20
_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken", "403"}


@dataclass(frozen=True)
class S3Connection:
    """How to reach the S3 service (any S3-compatible one: MinIO, Ceph RGW, AWS)."""

    bucket: str
    region: str
    access_key_id: str
    secret_access_key: str = field(repr=False)
    endpoint_url: str | None = None

    @classmethod
    def from_secret(cls, store: SecretStore) -> S3Connection:
        """The connection kept in the secrets store (`remotegpu datasets-s3 set` writes it)."""
        value = store.get(S3_SECRET)
        data = json.loads(value if isinstance(value, str) else value.decode())
        return cls(
            bucket=data["bucket"],
            region=data.get("region") or "us-east-1",
            access_key_id=data["access_key_id"],
            secret_access_key=data["secret_access_key"],
            endpoint_url=data.get("endpoint_url") or None,
        )

    def to_secret(self) -> str:
        """The JSON `from_secret` reads."""
        return json.dumps(
            {
                "bucket": self.bucket,
                "region": self.region,
                "access_key_id": self.access_key_id,
                "secret_access_key": self.secret_access_key,
                "endpoint_url": self.endpoint_url,
            }
        )

    def client(self) -> Any:
        """A boto3 S3 client (path-style addressing, which every S3-compatible server understands)."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=60,
            ),
        )


def s3_error(error: Exception, bucket: str) -> Exception:
    """One of our errors for a boto3 error, naming the bucket and what to do (never the credentials)."""
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code in ("NoSuchBucket", "404") and "Key" not in str(error.response.get("Error", {})):
            return StorageRefusedError(f"S3 bucket {bucket!r} does not exist; create it or name another")
        if code in _CREDENTIAL_CODES:
            return StorageRefusedError(
                f"S3 refused the credentials for bucket {bucket!r} ({code}); check the access key and its"
                " permissions"
            )
        if code.startswith("5") or code in ("SlowDown", "InternalError", "ServiceUnavailable"):
            return StorageUnavailableError(f"S3 answered {code} for bucket {bucket!r}; try again")
        return StorageRefusedError(f"S3 refused the request on bucket {bucket!r}: {code}")
    if isinstance(error, EndpointConnectionError | BotoCoreError):
        return StorageUnavailableError(
            f"S3 could not be reached for bucket {bucket!r}: {error.__class__.__name__}"
        )
    return error


@dataclass(frozen=True)
class UploadedPart:
    """A part S3 already holds: its number, ETag (the MD5 of its bytes, quoted) and size."""

    number: int
    etag: str
    size_bytes: int


class S3Storage:
    """Datasets as objects `datasets/<id>/<file name>` in the connection's bucket."""

    kind = "s3"

    def __init__(self, connection: S3Connection) -> None:
        self.connection = connection
        self.bucket = connection.bucket
        self._client = connection.client()

    def key(self, dataset_id: uuid.UUID, file_name: str) -> str:
        return f"datasets/{dataset_id}/{file_name}"

    def _call(self, method: str, **params: Any) -> Any:
        try:
            return getattr(self._client, method)(**params)
        except (ClientError, BotoCoreError) as error:
            raise s3_error(error, params.get("Bucket", self.bucket)) from None

    def start_upload(self, dataset_id: uuid.UUID, file_name: str) -> str:
        """A new multipart upload of the dataset's object; its id."""
        answer = self._call(
            "create_multipart_upload", Bucket=self.bucket, Key=self.key(dataset_id, file_name)
        )
        return str(answer["UploadId"])

    def part_urls(
        self, dataset_id: uuid.UUID, file_name: str, upload_id: str, numbers: list[int]
    ) -> dict[int, str]:
        """Presigned `PUT` URLs for the parts `numbers`, valid for an hour (signing calls nobody)."""
        key = self.key(dataset_id, file_name)
        return {
            number: self._client.generate_presigned_url(
                "upload_part",
                Params={"Bucket": self.bucket, "Key": key, "UploadId": upload_id, "PartNumber": number},
                ExpiresIn=PRESIGN_SECONDS,
            )
            for number in numbers
        }

    def uploaded_parts(self, dataset_id: uuid.UUID, file_name: str, upload_id: str) -> list[UploadedPart]:
        """The parts S3 holds for the upload, by number."""
        parts: list[UploadedPart] = []
        marker = 0
        while True:
            answer = self._call(
                "list_parts",
                Bucket=self.bucket,
                Key=self.key(dataset_id, file_name),
                UploadId=upload_id,
                PartNumberMarker=marker,
            )
            parts += [UploadedPart(p["PartNumber"], p["ETag"], p["Size"]) for p in answer.get("Parts", [])]
            if not answer.get("IsTruncated"):
                return parts
            marker = int(answer["NextPartNumberMarker"])

    def complete(
        self, dataset_id: uuid.UUID, file_name: str, upload_id: str, parts: list[tuple[int, str]]
    ) -> None:
        """Join the parts into the object; ConflictError when S3 lacks one of them or its ETag differs."""
        try:
            self._client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key(dataset_id, file_name),
                UploadId=upload_id,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etag} for n, etag in sorted(parts)]},
            )
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code == "NoSuchUpload" and self._exists(dataset_id, file_name):
                return  # completed before (a repeat after a crash): verification decides
            if code in ("InvalidPart", "InvalidPartOrder", "EntityTooSmall", "NoSuchUpload"):
                raise ConflictError(
                    f"S3 could not join the parts ({code}); upload the missing parts again and complete",
                    "$.parts",
                ) from None
            raise s3_error(error, self.bucket) from None
        except BotoCoreError as error:
            raise s3_error(error, self.bucket) from None

    def _exists(self, dataset_id: uuid.UUID, file_name: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=self.key(dataset_id, file_name))
        except ClientError:
            return False
        return True

    def abort(self, dataset_id: uuid.UUID, file_name: str, upload_id: str) -> None:
        """Abort one multipart upload (its parts are discarded)."""
        self._call(
            "abort_multipart_upload",
            Bucket=self.bucket,
            Key=self.key(dataset_id, file_name),
            UploadId=upload_id,
        )

    def stored(self, dataset_id: uuid.UUID, file_name: str) -> StoredContent | None:
        try:
            answer = self._client.get_object(Bucket=self.bucket, Key=self.key(dataset_id, file_name))
        except ClientError as error:
            if str(error.response.get("Error", {}).get("Code")) in ("NoSuchKey", "404"):
                return None
            raise s3_error(error, self.bucket) from None
        except BotoCoreError as error:
            raise s3_error(error, self.bucket) from None
        return sha256_of(answer["Body"].iter_chunks(_READ_BYTES))

    def remove(self, dataset_id: uuid.UUID, file_name: str) -> None:
        prefix = f"datasets/{dataset_id}/"
        uploads = self._call("list_multipart_uploads", Bucket=self.bucket, Prefix=prefix)
        for upload in uploads.get("Uploads", []):
            self._call(
                "abort_multipart_upload", Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        for key, _ in list_objects(self._client, S3Location(self.bucket, prefix)):
            self._call("delete_object", Bucket=self.bucket, Key=key)


def list_objects(client: Any, location: S3Location) -> Iterator[tuple[str, int]]:
    """(key, size) of every object under the location's prefix, in key order; StorageRefusedError when
    the bucket does not exist or the credentials are refused."""
    token: str | None = None
    while True:
        params: dict[str, Any] = {"Bucket": location.bucket, "Prefix": location.prefix}
        if token:
            params["ContinuationToken"] = token
        try:
            answer = client.list_objects_v2(**params)
        except (ClientError, BotoCoreError) as error:
            raise s3_error(error, location.bucket) from None
        for item in answer.get("Contents", []):
            if not item["Key"].endswith("/"):
                yield item["Key"], int(item["Size"])
        if not answer.get("IsTruncated"):
            return
        token = answer["NextContinuationToken"]
