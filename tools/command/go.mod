// Template tools module for the `command` resource provider (pulumi-resource-command).
// Kept apart from tools/pulumi so the provider builds against the pkg/v3 and
// pulumi-go-provider versions it was released with. No require lines on purpose:
// scripts/install-pulumi.sh adds them from tools/versions.env in a scratch copy.
module gin-deploy/tools/command

go 1.24
