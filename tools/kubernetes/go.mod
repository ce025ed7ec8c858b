// Template tools module for kube-apiserver, kube-controller-manager, kube-scheduler and
// kubectl. No require lines on purpose: scripts/install-kubernetes.sh copies it to a
// scratch directory, requires k8s.io/kubernetes at KUBERNETES_VERSION (tools/versions.env)
// and points each staging module that k8s.io/kubernetes requires at v0.0.0 to its
// published release (v0.MINOR.PATCH).
module gin-deploy/tools/kubernetes

go 1.26
