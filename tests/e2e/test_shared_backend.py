"""State for a team: one S3 backend (here a local S3-compatible server), two checkouts.

The Pulumi DIY backend keeps state and its lock in the bucket, so a teammate's checkout
(or CI) sees the stack exactly as the first one left it, and two `up`s at once are
refused by the lock, whoever runs them. moto's server mode stands in for S3.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gin_deploy import automation
from tests.e2e.conftest import (
    Project,
    _kill_everything_under,
    make_project,
    require_cli,
)
from tests.net import free_ports

pytestmark = [pytest.mark.e2e, pytest.mark.host]
STACK = "team"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto S3 server on a free loopback port with one bucket; the backend URL."""
    port = free_ports(1)[0]
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H",
                               "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=log.open("w"))
    try:
        import boto3

        endpoint = f"http://127.0.0.1:{port}"
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
        deadline = time.monotonic() + 30
        while True:
            try:
                s3.create_bucket(Bucket="gin-deploy-state")
                break
            except Exception:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto_server did not start:\n{log.read_text()}")
                time.sleep(0.3)
        yield (f"s3://gin-deploy-state?region=us-east-1&endpoint={endpoint}"
               "&s3ForcePathStyle=true")
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def checkouts(s3_backend: str) -> Iterator[tuple[Project, Project]]:
    """Two checkouts of the project sharing the S3 backend and the stack's passphrase."""
    require_cli()
    tmp = Path(tempfile.mkdtemp(prefix="gd-team-"))
    tmp.chmod(0o755)
    passphrase = tmp / "passphrase"
    passphrase.write_text("shared-team-passphrase\n")
    passphrase.chmod(0o600)
    first, second = (make_project(tmp / name, backend_url=s3_backend,
                                  passphrase_file=passphrase, extra_env=AWS_ENV)
                     for name in ("alice", "bob"))
    # Both deploy the same host: the second checkout's config is the first one's.
    second.state_dir, second.https_port, second.http_port, second.base_port = (
        first.state_dir, first.https_port, first.http_port, first.base_port)
    try:
        yield first, second
    finally:
        _kill_everything_under(first.state_dir)
        shutil.rmtree(tmp, ignore_errors=True)


def share_stack_file(source: Project, target: Project) -> None:
    """What `git pull` does for a teammate: the stack file (config + encryption salt)."""
    name = f"Pulumi.{STACK}.yaml"
    shutil.copy(source.root / name, target.root / name)


def test_up_in_one_checkout_is_no_change_in_another_and_the_lock_is_shared(
        checkouts: tuple[Project, Project]) -> None:
    alice, bob = checkouts
    alice.write_stack_file(STACK, alice.dev_config())
    first = automation.up(STACK, settings=alice.settings)
    assert first.summary.get("create", 0) >= 2, first.summary
    share_stack_file(alice, bob)

    preview = automation.preview(STACK, settings=bob.settings, expect_no_changes=True)
    assert not preview.changed
    assert automation.outputs(STACK, settings=bob.settings)["url"] == \
        automation.outputs(STACK, settings=alice.settings)["url"]

    # Alice rolls out a new version; Bob's `up` meanwhile is refused by the lock in S3.
    config = alice.dev_config()
    config["gin-deploy:app"] = {**config["gin-deploy:app"], "version": "2.0.0",
                                "env": {"STARTUP_DELAY": "2s"}}
    alice.write_stack_file(STACK, config)
    share_stack_file(alice, bob)
    errors: list[BaseException] = []

    def alice_up() -> None:
        try:
            automation.up(STACK, settings=alice.settings)
        except BaseException as err:  # reported by the main thread
            errors.append(err)

    worker = threading.Thread(target=alice_up)
    worker.start()
    try:
        time.sleep(4)   # Alice's update holds the lock (its instances take >= 2 s each)
        with pytest.raises(automation.StackLockedError) as err:
            automation.up(STACK, settings=bob.settings)
        assert not isinstance(err.value, automation.StaleLockError)
    finally:
        worker.join(timeout=600)
    assert not errors, errors
    preview = automation.preview(STACK, settings=bob.settings, expect_no_changes=True)
    assert not preview.changed

    automation.destroy(STACK, settings=bob.settings)
