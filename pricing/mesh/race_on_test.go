//go:build race

package mesh

// raceDetector: the race detector slows the exact oracle about tenfold.
const raceDetector = true
