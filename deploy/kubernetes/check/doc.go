// Package check proves what can be proven about deploy/kubernetes without a
// cluster: the base renders with kustomize, every object decodes strictly
// into the k8s.io/api types (an unknown or misspelt field fails), the pod
// template passes Pod Security "restricted", and the values that must agree
// with each other and with cbkgate agree (grace period, probes, ports,
// selectors, settings the binary knows).
//
// It is its own Go module so that the Kubernetes libraries stay out of the
// server's go.mod; `go test ./...` at the repository root does not enter
// it. Run it with
//
//	cd deploy/kubernetes/check && go test ./...
package check
