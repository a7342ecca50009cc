// Package e2e is ficus's end-to-end suite (build tag e2e, "make e2e"): the
// whole system in Docker, one container per service on one network, driven
// through its real interfaces, with faults injected by toxiproxy and by
// stopping, killing and restarting containers. Every scenario that moves
// data ends with a delivery checker's verdict (package e2e/checker). The
// harness is package e2e/harness; docs/e2e.md says how to run it, what each
// scenario guards against and how to read the report.
package e2e
