// Package instant is the mesh calculator's estimator: it estimates print
// time and filament from a model's geometry alone, in microseconds, with
// coefficients fitted against PrusaSlicer (pricing/slicer) on a corpus of
// printable parts. See docs/pricing-estimate.md.
package instant
