"""One storage layer: a URI (``/local/path``, ``file://...``, ``s3://bucket/prefix``) -> filesystem + path.

Every reader and writer in the project resolves its URI here, and Ray Data gets the same
``filesystem=`` object. We use pyarrow filesystems because Ray Data, pyarrow.parquet and the
Ray Train checkpoint storage all accept them natively, and they pickle to Ray workers.

S3 settings come from :class:`StorageConfig` or, when unset, the standard AWS environment
variables (``AWS_ENDPOINT_URL[_S3]``, ``AWS_REGION``/``AWS_DEFAULT_REGION``,
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``). With no keys at all,
pyarrow falls back to the AWS default credential chain, which covers IRSA / workload identity
(``AWS_WEB_IDENTITY_TOKEN_FILE`` + ``AWS_ROLE_ARN``) on Kubernetes.
"""

from __future__ import annotations

import json
import os
import posixpath
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import pyarrow.fs as pafs


@dataclass
class StorageConfig:
    """Object-store access. Leave credentials empty in committed YAML: use env vars or IRSA."""

    s3_endpoint: str | None = None  # e.g. http://minio.minio:9000; None -> env AWS_ENDPOINT_URL(_S3) -> AWS
    s3_region: str | None = None  # None -> env AWS_REGION / AWS_DEFAULT_REGION -> us-east-1
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_session_token: str | None = None
    s3_anonymous: bool = False
    # Seconds to connect and to wait for each answer; a hung endpoint then fails instead of stalling
    # the job. None keeps the AWS SDK's defaults.
    s3_timeout_s: float | None = None
    s3_retries: int | None = None  # attempts per request (AWS standard retry strategy); None: SDK default

    def __post_init__(self) -> None:
        if self.s3_timeout_s is not None and self.s3_timeout_s <= 0:
            raise ValueError(f"s3_timeout_s must be > 0 (or null for the SDK default), got {self.s3_timeout_s}")
        if self.s3_retries is not None and self.s3_retries < 1:
            raise ValueError(f"s3_retries must be >= 1 (or null for the SDK default), got {self.s3_retries}")
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            raise ValueError("s3_access_key_id and s3_secret_access_key must be set together")
        if self.s3_endpoint is not None and not self.s3_endpoint.startswith(("http://", "https://")):
            raise ValueError(f"s3_endpoint must start with http:// or https://, got {self.s3_endpoint!r}")


@dataclass(frozen=True)
class Location:
    """A resolved place in storage: ``fs`` + ``path`` (no scheme), and the ``uri`` a user gave."""

    fs: pafs.FileSystem
    path: str
    uri: str

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith("s3://")

    def child(self, *parts: str) -> Location:
        path = posixpath.join(self.path, *parts)
        uri = self.uri.rstrip("/") + "/" + "/".join(p.strip("/") for p in parts)
        return Location(self.fs, path, uri)

    def __str__(self) -> str:  # error messages name the URI the user wrote
        return self.uri


def s3_filesystem(cfg: StorageConfig | None = None) -> pafs.S3FileSystem:
    """A pyarrow S3 filesystem from config, then env vars (pyarrow does not read the endpoint env)."""
    cfg = cfg or StorageConfig()
    env = os.environ
    endpoint = cfg.s3_endpoint or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    region = cfg.s3_region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
    kwargs: dict[str, Any] = {"region": region}
    if endpoint:
        parsed = urlparse(endpoint)
        kwargs["endpoint_override"] = parsed.netloc + parsed.path.rstrip("/")
        kwargs["scheme"] = parsed.scheme
        # MinIO and moto serve buckets as paths, not virtual hosts.
        kwargs["force_virtual_addressing"] = False
    if cfg.s3_timeout_s is not None:
        kwargs["connect_timeout"] = kwargs["request_timeout"] = float(cfg.s3_timeout_s)
    if cfg.s3_retries is not None:
        kwargs["retry_strategy"] = pafs.AwsStandardS3RetryStrategy(max_attempts=cfg.s3_retries)
    if cfg.s3_anonymous:
        kwargs["anonymous"] = True
    elif cfg.s3_access_key_id:
        kwargs["access_key"] = cfg.s3_access_key_id
        kwargs["secret_key"] = cfg.s3_secret_access_key
        if cfg.s3_session_token:
            kwargs["session_token"] = cfg.s3_session_token
    elif env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        kwargs["access_key"] = env["AWS_ACCESS_KEY_ID"]
        kwargs["secret_key"] = env["AWS_SECRET_ACCESS_KEY"]
        if env.get("AWS_SESSION_TOKEN"):
            kwargs["session_token"] = env["AWS_SESSION_TOKEN"]
    return pafs.S3FileSystem(**kwargs)


def resolve(uri: str, cfg: StorageConfig | None = None) -> Location:
    """Turn a URI into a :class:`Location`. Relative local paths become absolute (Ray workers
    run in another working directory)."""
    if not uri:
        raise ValueError("empty storage URI")
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"{uri!r}: s3 URI needs a bucket (s3://bucket/prefix)")
        path = (parsed.netloc + parsed.path).rstrip("/")
        return Location(s3_filesystem(cfg), path, "s3://" + path)
    if parsed.scheme in ("", "file") or (len(parsed.scheme) == 1 and os.name == "nt"):
        local = parsed.path if parsed.scheme == "file" else uri
        local = os.path.abspath(os.path.expanduser(local))
        return Location(pafs.LocalFileSystem(), local, local)
    raise ValueError(f"{uri!r}: unsupported storage scheme {parsed.scheme!r}; use a local path, file:// or s3://")


def exists(loc: Location) -> bool:
    return loc.fs.get_file_info(loc.path).type != pafs.FileType.NotFound


def is_dir(loc: Location) -> bool:
    info = loc.fs.get_file_info(loc.path)
    if info.type == pafs.FileType.Directory:
        return True
    # S3 has no directories: a prefix "exists" when something lies below it.
    return loc.is_s3 and info.type == pafs.FileType.NotFound and bool(list_files(loc))


def list_files(loc: Location, suffix: str = "", recursive: bool = True) -> list[Location]:
    """Files under ``loc`` (sorted by path, so listing order is deterministic)."""
    try:
        infos = loc.fs.get_file_info(pafs.FileSelector(loc.path, recursive=recursive, allow_not_found=True))
    except (FileNotFoundError, NotADirectoryError):
        return []
    out = [
        Location(loc.fs, i.path, _uri_for(loc, i.path))
        for i in infos
        if i.type == pafs.FileType.File and i.path.endswith(suffix) and not _is_hidden(loc.path, i.path)
    ]
    return sorted(out, key=lambda x: x.path)


def total_bytes(loc: Location) -> int:
    """Bytes of every file under ``loc``, hidden ones included (0 when it does not exist)."""
    try:
        infos = loc.fs.get_file_info(pafs.FileSelector(loc.path, recursive=True, allow_not_found=True))
    except (FileNotFoundError, NotADirectoryError):
        return 0
    return sum(i.size or 0 for i in infos if i.type == pafs.FileType.File)


def _is_hidden(root: str, path: str) -> bool:
    rel = posixpath.relpath(path, root)
    return any(part.startswith((".", "_")) for part in rel.split("/"))


def _uri_for(base: Location, path: str) -> str:
    rel = posixpath.relpath(path, base.path)
    return base.uri if rel == "." else base.uri.rstrip("/") + "/" + rel


def read_bytes(loc: Location) -> bytes:
    try:
        with loc.fs.open_input_stream(loc.path) as f:
            return f.read()
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{loc.uri}: not found") from e


def write_bytes(loc: Location, data: bytes) -> None:
    """Write an object whole. On S3 a single PUT is atomic; locally we write a sibling temp file
    and rename it, so a reader never sees a half-written file."""
    parent = posixpath.dirname(loc.path)
    if not loc.is_s3:
        loc.fs.create_dir(parent, recursive=True)
        tmp = posixpath.join(parent, f".tmp-{uuid.uuid4().hex}-{posixpath.basename(loc.path)}")
        with loc.fs.open_output_stream(tmp) as f:
            f.write(data)
        loc.fs.move(tmp, loc.path)
        return
    with loc.fs.open_output_stream(loc.path) as f:
        f.write(data)


def read_json(loc: Location) -> Any:
    raw = read_bytes(loc)
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"{loc.uri}: not valid JSON ({e})") from e


def write_json(loc: Location, obj: Any) -> None:
    write_bytes(loc, json.dumps(obj, indent=2, sort_keys=True, default=_json_default).encode())


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def write_text(loc: Location, text: str) -> None:
    write_bytes(loc, text.encode())


def read_text(loc: Location) -> str:
    return read_bytes(loc).decode()


def delete_dir(loc: Location) -> None:
    """Remove everything under ``loc`` (missing is fine)."""
    try:
        loc.fs.delete_dir(loc.path)
    except (FileNotFoundError, OSError):
        for f in list_files(loc):
            loc.fs.delete_file(f.path)


def make_dir(loc: Location) -> None:
    if not loc.is_s3:
        loc.fs.create_dir(loc.path, recursive=True)


def copy_file(src: Location, dst: Location) -> None:
    if not dst.is_s3:
        dst.fs.create_dir(posixpath.dirname(dst.path), recursive=True)
    pafs.copy_files(src.path, dst.path, source_filesystem=src.fs, destination_filesystem=dst.fs)


def staging_sibling(target: Location, tag: str = "staging") -> Location:
    """A hidden sibling prefix of ``target`` (listing skips names starting with '.')."""
    parent, name = posixpath.split(target.path.rstrip("/"))
    staged = f".{tag}-{name}-{uuid.uuid4().hex[:12]}"
    uri_parent = target.uri.rstrip("/").rsplit("/", 1)[0]
    return Location(target.fs, posixpath.join(parent, staged), f"{uri_parent}/{staged}")


def replace_dir(staged: Location, target: Location) -> None:
    """Move a fully written ``staged`` directory into place at ``target``.

    Locally this is two renames (the old output is removed only after the new one is in
    place). S3 has no rename: objects are copied, then the staged prefix is deleted. Outputs
    that readers consume while they change (SID tables) use versioned prefixes and a LATEST
    pointer instead (see ``simcit_dist.assign.publish``).
    """
    if not target.is_s3:
        old = None
        if exists(target):
            old = staging_sibling(target, "old")
            target.fs.move(target.path, old.path)
        target.fs.create_dir(posixpath.dirname(target.path), recursive=True)
        target.fs.move(staged.path, target.path)
        if old is not None:
            target.fs.delete_dir(old.path)
        return
    delete_dir(target)
    copy_objects(staged, target)
    delete_dir(staged)


def copy_objects(src: Location, dst: Location) -> None:
    """Copy every file under ``src`` to the same relative path under ``dst`` (server-side on S3).

    Every name, hidden ones included: a ``_SUCCESS`` marker or ``.heartbeat`` is part of the output
    (``list_files`` skips them, as readers of a table should)."""
    infos = src.fs.get_file_info(pafs.FileSelector(src.path, recursive=True))
    for info in (i for i in infos if i.type == pafs.FileType.File):
        dst.fs.copy_file(info.path, posixpath.join(dst.path, posixpath.relpath(info.path, src.path)))
