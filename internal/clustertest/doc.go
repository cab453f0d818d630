// Package clustertest holds the tests of cbkgate as it is deployed: the
// image's file system run as uid 65532 with a read-only root (build tag
// image: needs buildah and root for a mount namespace and chroot), and
// three replicas of the real binary behind HAProxy (build tag haproxy): a
// rolling restart under load, and rebalancing of one long-lived connection
// through an L4 balancer by --max-connection-age. Plain `go test ./...`
// builds neither; .ci/run runs both explicitly:
//
//	go test -tags image -count=1 -v ./internal/clustertest
//	go test -tags haproxy -count=1 -v ./internal/clustertest
//
// They are not skipped when a tool is missing: they fail, saying what to
// install.
package clustertest
