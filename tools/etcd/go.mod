// Template tools module for etcd (the server's main package is the root of
// go.etcd.io/etcd/server/v3). No require lines on purpose: scripts/install-kubernetes.sh
// adds go.etcd.io/etcd/server/v3 at ETCD_VERSION (tools/versions.env) in a scratch copy.
module gin-deploy/tools/etcd

go 1.26
