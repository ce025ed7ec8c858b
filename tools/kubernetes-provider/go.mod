// Template tools module for the Pulumi Kubernetes provider (pulumi-resource-kubernetes).
// No require lines and no package on purpose: scripts/install-kubernetes.sh copies it to a
// scratch directory, adds github.com/pulumi/pulumi-kubernetes/provider/v4 at
// PULUMI_KUBERNETES_PROVIDER_MODULE with its sdk/v4 at PULUMI_KUBERNETES_PROVIDER_VERSION
// (tools/versions.env), copies the provider's cmd/pulumi-resource-kubernetes main package
// in and generates the two files it embeds before building it.
module gin-deploy/tools/kubernetes-provider

go 1.26
