// Package deploy holds ficus's deployment manifests, checked by its tests
// without Docker Compose or a cluster:
//
//   - compose.yaml (with compose/): the whole system on one Docker host,
//     loaded with compose-go as `docker compose config` would;
//   - kubernetes/: a Kustomize directory, built with the kustomize API and
//     decoded strictly into the Kubernetes API types; the custom resources
//     (KEDA ScaledObject, Prometheus Operator ServiceMonitor) are checked
//     against their CRDs' schemas, kept in testdata/crds.
//
// Every ficus command line in them is checked against the real command
// tree of the ficus binary: every command and flag must exist, and every
// value must parse. See docs/deploy.md.
package deploy
