"""One way to run commands and place files on a host, local or over SSH.

HostTarget is written once against `HostConnection`; only how a file reaches the
host and which pulumi-command resource runs a command differ between
`connection: local` (local.Command, files used where they are) and
`connection: ssh` (remote.CopyToRemote into a staging directory, remote.Command).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_command as command


@dataclass(frozen=True)
class SshEndpoint:
    host: str
    user: str
    port: int
    private_key: pulumi.Input[str]   # always a Pulumi secret
    host_key: str  # the pinned public key line: the connection refuses any other


class HostConnection:
    """Runs commands and stages files on one host, as children of `parent`."""

    def __init__(self, name: str, parent: pulumi.Resource, ssh: SshEndpoint | None,
                 staging_dir: str) -> None:
        self._name = name
        self._parent = parent
        self.ssh = ssh
        self.staging_dir = staging_dir
        # The agent needs only a python3 (3.9+, standard library): the host's own, locally
        # too, so no path of the deploying checkout or its venv ends up in the stack's state.
        self.python = "python3"
        self._remote = (
            command.remote.ConnectionArgs(
                host=ssh.host, user=ssh.user, port=ssh.port,
                private_key=pulumi.Output.secret(ssh.private_key),
                host_key=ssh.host_key,
                dial_error_limit=3, per_dial_timeout=10,
            )
            if ssh is not None else None
        )

    @property
    def is_local(self) -> bool:
        return self.ssh is None

    def _opts(self, depends_on: Sequence[pulumi.Resource],
              **extra: object) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self._parent, depends_on=list(depends_on),
                                      **extra)  # type: ignore[arg-type]

    def stage_file(self, role: str, local_path: str, file_name: str, sha256: pulumi.Input[str],
                   depends_on: Sequence[pulumi.Resource] = ()) -> tuple[str, list[pulumi.Resource]]:
        """Make `local_path` available on the host; returns (host path, resources).

        Local hosts read the file in place; SSH hosts get a copy in the staging
        directory, re-sent only when its sha256 changes.
        """
        if self._remote is None:
            return local_path, list(depends_on)
        remote_path = f"{self.staging_dir}/{file_name}"
        copy = command.remote.CopyToRemote(
            f"{self._name}-upload-{role}",
            connection=self._remote,
            source=pulumi.FileAsset(local_path),
            remote_path=remote_path,
            triggers=[sha256],
            opts=self._opts(depends_on),
        )
        return remote_path, [copy]

    def prepare_staging(self) -> list[pulumi.Resource]:
        if self._remote is None:
            return []
        staging = shlex.quote(self.staging_dir)
        # Deleted last (everything staged depends on it), so destroy leaves no file.
        mkdir = command.remote.Command(
            f"{self._name}-staging",
            connection=self._remote,
            create=f"mkdir -p {staging} && chmod 700 {staging}",
            delete=f"rm -rf {staging}",
            opts=self._opts(()),
        )
        return [mkdir]

    def run(self, role: str, *, create: str, delete: str | None, stdin: pulumi.Input[str],
            depends_on: Sequence[pulumi.Resource]) -> pulumi.CustomResource:
        """A command that re-runs (as `update`) whenever `create` or `stdin` change.

        Never `triggers`: a trigger change means replace, and replacing a deploy
        would run its delete (destroy) around it. Replacement, if it happens for
        another reason, deletes first so the new deploy is not torn down after.
        Its stdout/stderr are kept secret: pulumi-command keeps only same-named
        outputs secret, and these commands may be fed secrets on stdin.
        """
        opts = self._opts(depends_on, delete_before_replace=True,
                          additional_secret_outputs=["stdout", "stderr"])
        if self._remote is None:
            return command.local.Command(
                f"{self._name}-{role}", create=create, update=create, delete=delete,
                stdin=stdin, opts=opts,
            )
        return command.remote.Command(
            f"{self._name}-{role}", connection=self._remote, create=create, update=create,
            delete=delete, stdin=stdin, opts=opts,
        )
