"""Artifact size: the static binary against the image app/Dockerfile produces.

The image is built with podman when the Dockerfile's builder image is available
locally (`podman build --runtime runc`, nothing pulled). Otherwise the final stage
(`FROM scratch` + two COPY instructions) is reproduced exactly: one layer tarball per
COPY, written with Python's tarfile as an OCI layer (the same paths, the same file
modes), plus the image config and manifest. Its size is what `podman images` would
report (uncompressed layers) and what a registry stores (gzip layers + config +
manifest). When podman is present that reproduction is also loaded into podman's
local store as an OCI archive, and podman's own size figure is recorded.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from bench.common import APP_DIR, Binary, run, tool

DOCKERFILE = APP_DIR / "Dockerfile"
CA_BUNDLE_IN_IMAGE = "etc/ssl/certs/ca-certificates.crt"
# Where Debian (the builder image is golang:*-bookworm) keeps the bundle the final stage copies.
LOCAL_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
MIB = 1024 * 1024


def builder_image() -> str:
    match = re.search(r"^FROM\s+(?:--platform=\S+\s+)?(\S+)\s+AS\s+build", DOCKERFILE.read_text(),
                      re.M | re.I)
    if match is None:
        raise RuntimeError("app/Dockerfile has no 'FROM ... AS build' stage")
    return match[1]


def _layer(files: list[tuple[str, bytes, int]]) -> bytes:
    """An OCI layer tarball: parent directories first, then the files (root-owned)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs: list[str] = []
        for name, _, _ in files:
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.append(d)
        for d in dirs:
            info = tarfile.TarInfo(d + "/")
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, data, mode in files:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def final_stage(binary: Binary, ca_bundle: Path = LOCAL_CA_BUNDLE) -> dict[str, Any]:
    """The final stage's layers, config and manifest, built in memory; their sizes."""
    layers = [
        _layer([(CA_BUNDLE_IN_IMAGE, ca_bundle.read_bytes(), 0o644)]),
        _layer([("app", binary.path.read_bytes(), 0o755)]),
    ]
    gz = [gzip.compress(layer, compresslevel=6, mtime=0) for layer in layers]
    config = {
        "architecture": "amd64", "os": "linux",
        "config": {"User": "65532:65532", "ExposedPorts": {"8080/tcp": {}},
                   "Entrypoint": ["/app"],
                   "Healthcheck": {"Test": ["CMD", "/app", "healthcheck"],
                                   "Interval": 10_000_000_000, "Timeout": 3_000_000_000,
                                   "StartPeriod": 10_000_000_000, "Retries": 3}},
        "rootfs": {"type": "layers", "diff_ids": [_digest(layer) for layer in layers]},
        "history": [{"created_by": "COPY ca-certificates.crt"}, {"created_by": "COPY app"}],
    }
    config_bytes = json.dumps(config, separators=(",", ":")).encode()
    manifest = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": _digest(config_bytes), "size": len(config_bytes)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": _digest(g), "size": len(g)} for g in gz],
    }
    manifest_bytes = json.dumps(manifest, separators=(",", ":")).encode()
    return {
        "layers": layers, "gz": gz, "config": config_bytes, "manifest": manifest_bytes,
        "ca_bundle_bytes": ca_bundle.stat().st_size,
        "layer_bytes": [len(layer) for layer in layers],
        "uncompressed_bytes": sum(len(layer) for layer in layers),
        "compressed_bytes": sum(len(g) for g in gz) + len(config_bytes) + len(manifest_bytes),
    }


def _podman_load(stage: dict[str, Any]) -> int | None:
    """Load the reproduced image as an OCI archive into podman; its reported size."""
    podman = tool("podman")
    if podman is None:
        return None
    work = Path(tempfile.mkdtemp(prefix="gin-bench-oci-"))
    try:
        blobs = work / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        for blob in (*stage["gz"], stage["config"], stage["manifest"]):
            (blobs / _digest(blob).split(":")[1]).write_bytes(blob)
        (work / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        (work / "index.json").write_text(json.dumps({
            "schemaVersion": 2, "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": _digest(stage["manifest"]), "size": len(stage["manifest"]),
                "annotations": {"org.opencontainers.image.ref.name": "gin-deploy-bench-size"}}]}))
        archive = work.with_suffix(".tar")
        with tarfile.open(archive, "w") as tar:
            for path in sorted(work.rglob("*")):
                tar.add(path, arcname=str(path.relative_to(work)), recursive=False)
        loaded = run([podman, "load", "-i", str(archive)], timeout=120)
        image = next((ln.split(":", 1)[1].strip() for ln in loaded.stdout.splitlines()
                      if ln.startswith("Loaded image")), None)
        if loaded.returncode != 0 or image is None:
            return None
        size = run([podman, "image", "inspect", "--format", "{{.Size}}", image], timeout=60)
        run([podman, "rmi", "-f", image], timeout=60)
        return int(size.stdout.strip()) if size.returncode == 0 else None
    finally:
        shutil.rmtree(work, ignore_errors=True)
        work.with_suffix(".tar").unlink(missing_ok=True)


def _podman_build(binary: Binary) -> int | None:
    """`podman build` of app/Dockerfile when its builder image is already local."""
    podman = tool("podman")
    if podman is None or run([podman, "image", "exists", builder_image()]).returncode != 0:
        return None
    tag = "localhost/gin-deploy-bench/hello-gin:build"
    built = run([podman, "build", "--runtime", "runc", "--pull=never", "--build-arg",
                 f"VERSION={binary.version}", "-t", tag, str(APP_DIR)], timeout=1800)
    if built.returncode != 0:
        return None
    size = run([podman, "image", "inspect", "--format", "{{.Size}}", tag], timeout=60)
    run([podman, "rmi", "-f", tag], timeout=60)
    return int(size.stdout.strip()) if size.returncode == 0 else None


def measure(binary: Binary) -> dict[str, Any]:
    binary_bytes = binary.path.stat().st_size
    built = _podman_build(binary)
    stage = final_stage(binary)
    podman_size = _podman_load(stage)
    image_bytes = built or podman_size or stage["uncompressed_bytes"]
    method = (
        "podman build --runtime runc of app/Dockerfile" if built is not None else
        f"the final stage reproduced: builder image {builder_image()} is not available "
        "locally (no registry), so the two COPY layers were written as OCI layer tarballs "
        "(binary built with GinBuild's flags + this machine's Debian CA bundle)"
        + ("; podman loaded them and reports the size" if podman_size is not None else "")
    )
    return {
        "binary_bytes": binary_bytes,
        "image_bytes": image_bytes,
        "image_compressed_bytes": stage["compressed_bytes"],
        "ca_bundle_bytes": stage["ca_bundle_bytes"],
        "layer_bytes": stage["layer_bytes"],
        "podman_reported_bytes": podman_size if built is None else built,
        "overhead_bytes": image_bytes - binary_bytes,
        "goal_met": image_bytes <= binary_bytes + MIB,
        "method": method,
        "builder_image": builder_image(),
    }
