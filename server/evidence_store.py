"""Content-addressed evidence storage: bytes are stored under their SHA-256.

Two backends with one interface: the local filesystem (`ab/cd/<sha256>`, written to a
temp file and renamed, so a reader never sees a half-written file under a valid name) and
any S3-compatible object store (boto3). Writing the same content twice is a no-op, which
makes redelivered MQTT messages harmless.

Durability is batched: `put_many(items, durable=False)` writes and renames, and one `sync()`
(Linux `syncfs(2)`: data, inodes and directory entries of the whole filesystem, one journal
commit) makes everything written so far durable. The collector writes a batch's evidence in
its worker processes and calls `sync()` once before committing the rows that refer to it:
one flush per batch instead of six fsyncs per event (three files, three directories), which
measured 2.4 ms of CPU and 4-14 ms of blocking per event. Because a file renamed into place
but not yet flushed can survive a crash with the right size and the wrong bytes (XFS, ext4
delayed allocation), an existing file only counts as stored when its bytes hash to its name.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import itertools
import os
import re
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class EvidenceStoreError(RuntimeError):
    """The store could not durably write or read an item."""


class EvidenceIntegrityError(ValueError):
    """Bytes do not hash to the name they are stored or requested under."""


def check_sha256(sha256: str) -> str:
    """Validate an evidence id (64 lower-case hex chars) before it touches a path or key."""
    if not isinstance(sha256, str) or not SHA256_RE.fullmatch(sha256):
        raise ValueError(f"evidence id must be 64 lower-case hex characters, got {sha256!r:.80}")
    return sha256


class EvidenceStore(Protocol):
    def put(self, sha256: str, data: bytes, content_type: str = ...) -> bool:
        """Store `data` (whose hash must be `sha256`); False when it was already there."""
        ...

    def put_many(self, items: list[tuple[str, bytes, str]], durable: bool = True, verified: bool = False) -> int:
        """Store many (sha256, data, content_type); returns how many were new. With
        `durable=False` the items are durable only after the next `sync()`; `verified`: the
        caller has already checked each item's hash."""
        ...

    def sync(self) -> None:
        """Make everything `put_many(..., durable=False)` wrote (in any process) durable."""
        ...

    def get(self, sha256: str) -> bytes: ...

    def exists(self, sha256: str) -> bool: ...

    def delete(self, sha256: str) -> bool:
        """Remove an item for good (retention); False when it was not there."""
        ...

    def iter_ids(self) -> Iterator[str]: ...

    def describe(self) -> str: ...


def _verify(sha256: str, data: bytes) -> None:
    check_sha256(sha256)
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise EvidenceIntegrityError(f"bytes hash to {actual}, not {sha256}")


class LocalEvidenceStore:
    """Evidence on a local (or mounted) filesystem at `root/ab/cd/<sha256>`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._root_s = str(self.root)

    def path_for(self, sha256: str) -> Path:
        check_sha256(sha256)
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def put(self, sha256: str, data: bytes, content_type: str = "application/octet-stream") -> bool:
        """One item, durable on return (file and directory fsync'd)."""
        _verify(sha256, data)
        if self._intact(sha256, len(data)):
            return False
        self._write(sha256, data, fsync=True)
        _fsync_dir(self.path_for(sha256).parent)
        return True

    def _intact(self, sha256: str, size: int) -> bool:
        """True when the file exists with the right bytes (see the module doc: size is not enough)."""
        path = self._path_str(sha256)
        try:
            if os.stat(path).st_size != size:
                return False
            with open(path, "rb") as fh:
                return hashlib.file_digest(fh, "sha256").hexdigest() == sha256
        except FileNotFoundError:
            return False

    def _path_str(self, sha256: str) -> str:
        check_sha256(sha256)
        return f"{self._root_s}/{sha256[:2]}/{sha256[2:4]}/{sha256}"

    def _write(self, sha256: str, data: bytes, fsync: bool) -> None:
        """Temp file in the target directory, written (fsync'd if asked), renamed into place.
        Plain string paths and os calls: this runs ~1000 times a second on a busy collector."""
        dest = self._path_str(sha256)
        parent = dest[: -len(sha256) - 1]
        tmp = f"{parent}/.tmp-{os.getpid()}-{next(_TMP_SEQ)}-{os.urandom(4).hex()}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(tmp, flags, 0o444)
        except FileNotFoundError:
            for d in (parent[:-3], parent):
                with contextlib.suppress(FileExistsError):
                    os.mkdir(d)
            fd = os.open(tmp, flags, 0o444)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                if fsync:
                    os.fsync(fd)
                elif _FADV_DONTNEED is not None:
                    # start writing back now, without waiting: the batch's later sync() then
                    # finds most of the data already on its way to the disk
                    os.posix_fadvise(fd, 0, 0, _FADV_DONTNEED)
            finally:
                os.close(fd)
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def put_many(self, items: list[tuple[str, bytes, str]], durable: bool = True, verified: bool = False) -> int:
        """Write the items not already intact. `durable=False`: written and renamed into place,
        durable after the next `sync()` (which the caller must run before anything refers to
        them). Where `syncfs` is unavailable every file and directory is fsync'd instead.
        `verified`: the caller has just checked that each item hashes to its name."""
        todo: dict[str, bytes] = {}
        for sha, data, _ in items:
            if verified:
                check_sha256(sha)
            else:
                _verify(sha, data)
            if sha not in todo and not self._intact(sha, len(data)):
                todo[sha] = data
        if not todo:
            return 0
        if _syncfs is None:  # no batched flush on this platform: each file durable on its own
            for sha, data in todo.items():
                self._write(sha, data, fsync=True)
            for d in {self.path_for(sha).parent for sha in todo}:
                _fsync_dir(d)
            return len(todo)
        for sha, data in todo.items():
            self._write(sha, data, fsync=False)
        if durable:
            self.sync()
        return len(todo)

    def sync(self) -> None:
        """One `syncfs(2)` on the store's filesystem (a no-op where it is unavailable: then
        `put_many` already fsync'd everything)."""
        if _syncfs is None:
            return
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if _syncfs(fd) != 0:
                err = ctypes.get_errno()
                raise EvidenceStoreError(f"syncfs({self.root}) failed: {os.strerror(err)}")
        finally:
            os.close(fd)

    def get(self, sha256: str) -> bytes:
        try:
            return self.path_for(sha256).read_bytes()
        except FileNotFoundError as exc:
            raise KeyError(sha256) from exc

    def delete(self, sha256: str) -> bool:
        """Unlink the file and make the unlink durable (a purge that a crash undoes is no purge)."""
        path = self.path_for(sha256)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        _fsync_dir(path.parent)
        return True

    def iter_ids(self) -> Iterator[str]:
        for p in sorted(self.root.glob("??/??/*")):
            if p.is_file() and SHA256_RE.fullmatch(p.name):
                yield p.name

    def describe(self) -> str:
        return f"file://{self.root.resolve()}"

    def reopen_spec(self) -> str | None:
        """What `open_store` needs to open this store in another process."""
        return str(self.root.resolve())


_POOL: ThreadPoolExecutor | None = None
_TMP_SEQ = itertools.count()


def _load_syncfs() -> Any:
    """libc's syncfs(2) (Linux, glibc/musl), or None. `ROADEYE_EVIDENCE_FSYNC=per-file` forces
    the per-file fsync path (e.g. a filesystem shared with heavy writers, where flushing the
    whole filesystem per batch would wait on their data too)."""
    if os.environ.get("ROADEYE_EVIDENCE_FSYNC") == "per-file" or not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
    return fn


_syncfs = _load_syncfs()
_FADV_DONTNEED: int | None = getattr(os, "POSIX_FADV_DONTNEED", None)


def _io_pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=16, thread_name_prefix="evidence-io")
    return _POOL


def _fsync_dir(path: Path) -> None:
    """Make the rename itself durable (the directory entry), not just the file contents."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class S3EvidenceStore:
    """Evidence in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW...) under `prefix/ab/cd/<sha>`.

    S3 PUTs are atomic and durable once acknowledged, so no temp-object dance is needed.
    The object carries its SHA-256 as ChecksumSHA256 where the service supports it.
    """

    def __init__(
        self, bucket: str, prefix: str = "evidence", client: Any = None, **client_kwargs: Any
    ) -> None:
        import boto3

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._reopenable = client is None and not client_kwargs
        self.client = client or boto3.client("s3", **client_kwargs)

    def key_for(self, sha256: str) -> str:
        check_sha256(sha256)
        return f"{self.prefix}/{sha256[:2]}/{sha256[2:4]}/{sha256}" if self.prefix else sha256

    def exists(self, sha256: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self.key_for(sha256))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise EvidenceStoreError(f"S3 head_object failed: {exc}") from exc
        return True

    def put(self, sha256: str, data: bytes, content_type: str = "application/octet-stream") -> bool:
        import base64

        from botocore.exceptions import BotoCoreError, ClientError

        _verify(sha256, data)
        if self.exists(sha256):
            return False
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=self.key_for(sha256),
                Body=data,
                ContentType=content_type,
                ChecksumSHA256=base64.b64encode(bytes.fromhex(sha256)).decode(),
            )
        except (BotoCoreError, ClientError) as exc:
            raise EvidenceStoreError(f"S3 put_object failed: {exc}") from exc
        return True

    def put_many(self, items: list[tuple[str, bytes, str]], durable: bool = True, verified: bool = False) -> int:
        """Concurrent PUTs (S3 latency, not bandwidth, is the limit for ~100 kB objects);
        an acknowledged PUT is durable, so `durable` changes nothing here."""
        return sum(_io_pool().map(lambda it: int(self.put(*it)), items))

    def sync(self) -> None:
        """Nothing to do: every acknowledged PUT is already durable."""

    def get(self, sha256: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self.key_for(sha256))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise KeyError(sha256) from exc
            raise EvidenceStoreError(f"S3 get_object failed: {exc}") from exc
        return bytes(obj["Body"].read())

    def delete(self, sha256: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        if not self.exists(sha256):
            return False
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key_for(sha256))
        except (BotoCoreError, ClientError) as exc:
            raise EvidenceStoreError(f"S3 delete_object failed: {exc}") from exc
        return True

    def iter_ids(self) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{self.prefix}/" if self.prefix else ""):
            for obj in page.get("Contents", []):
                name = obj["Key"].rsplit("/", 1)[-1]
                if SHA256_RE.fullmatch(name):
                    yield name

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def reopen_spec(self) -> str | None:
        return f"s3://{self.bucket}/{self.prefix}" if self._reopenable else None


def open_store(spec: str) -> EvidenceStore:
    """`s3://bucket/prefix` (endpoint from AWS_ENDPOINT_URL etc.) or a filesystem path."""
    if spec.startswith("s3://"):
        rest = spec[5:]
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise ValueError(f"S3 evidence URL needs a bucket: {spec!r}")
        return S3EvidenceStore(bucket, prefix or "evidence")
    return LocalEvidenceStore(spec)
