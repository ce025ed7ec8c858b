// Template tools module for the Pulumi CLI and the Python language host.
// It deliberately has no require lines: scripts/install-pulumi.sh copies it to a
// scratch directory and adds the requirements at the versions in tools/versions.env
// (plus the non-local replace lines of pkg/v3's own go.mod at that tag).
module gin-deploy/tools/pulumi

go 1.24
