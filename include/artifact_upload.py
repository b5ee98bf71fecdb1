"""Put job code (Spark scripts, the training source tarball) into the lake bucket when it changed.

Objects carry their sha256 in metadata: a task retried, or run again with unchanged code, sends
no new upload, and a code change replaces the object. Encrypted with the lake's KMS key.
"""

from __future__ import annotations

import hashlib
import logging
from urllib.parse import urlparse

log = logging.getLogger(__name__)


def upload_if_changed(s3_client, uri: str, data: bytes, *, kms_key_arn: str) -> bool:
    """Write ``data`` to ``uri`` (``s3://…``) unless an object with the same sha256 is there.

    Returns whether it uploaded.
    """
    from botocore.exceptions import ClientError

    parsed = urlparse(uri)
    if parsed.scheme != "s3":
        raise ValueError(f"artifact URI {uri!r} is not an s3:// URI")
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    digest = hashlib.sha256(data).hexdigest()
    try:
        head = s3_client.head_object(Bucket=bucket, Key=key)
        if head.get("Metadata", {}).get("sha256") == digest:
            return False
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey"):
            raise
    s3_client.put_object(
        Bucket=bucket,
        Key=key,
        Body=data,
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId=kms_key_arn,
        Metadata={"sha256": digest},
    )
    log.info("Uploaded %s (sha256 %s)", uri, digest[:12])
    return True
