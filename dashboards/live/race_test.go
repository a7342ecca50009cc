//go:build race

package live_test

// raceEnabled: the race detector makes rasterizing a picture about twenty
// times slower, so the tests that draw every panel of every board draw
// two per board instead (the run without it draws them all).
const raceEnabled = true
