// Template tools module for kwok, which fakes nodes and pods for a real API server.
// Kept apart from tools/kubernetes: kwok builds against the client libraries it was
// released with. No require lines on purpose: scripts/install-kubernetes.sh adds
// sigs.k8s.io/kwok at KWOK_VERSION (tools/versions.env) in a scratch copy.
module gin-deploy/tools/kwok

go 1.26
