"""S3-sourced datasets: checking at creation that the prefix exists and can be read, and its size.

The listing runs before the dataset's transaction opens (no network call with a session open). It
reads with the platform's S3 connection (endpoint, region, credentials of `dataset-s3`) and the URL's
own bucket, so one S3 service serves both uploads and sources.
"""

from __future__ import annotations

import dataclasses

from remotegpu.core.datasets.configured import DatasetStorages
from remotegpu.core.datasets.control import NewDataset
from remotegpu.core.datasets.s3 import list_objects
from remotegpu.core.datasets.s3_urls import parse_s3_url
from remotegpu.core.datasets.storage import StorageRefusedError
from remotegpu.core.platform.errors import InvalidInputError


def locate_s3_source(new: NewDataset, url: str | None, storages: DatasetStorages) -> NewDataset:
    """`new` with its S3 location and listed size; InvalidInputError on `$.url` for a URL that does not
    parse, a bucket that does not exist, credentials S3 refuses, or a prefix with no objects."""
    if not url:
        raise InvalidInputError("$.url", "an S3 dataset names its objects: s3://BUCKET/PREFIX")
    location = parse_s3_url(url)
    client = storages.s3().connection.client()
    try:
        objects = list(list_objects(client, location))
    except StorageRefusedError as error:
        raise InvalidInputError("$.url", str(error)) from None
    if not objects:
        raise InvalidInputError("$.url", f"there are no objects under {location.url}; check the prefix")
    return dataclasses.replace(new, location=location, size_bytes=sum(size for _, size in objects))
