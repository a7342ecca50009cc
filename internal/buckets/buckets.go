// Package buckets holds the upper bounds of ficus's Prometheus histograms
// (metrics.PrometheusHistogram, exposed as NAME_bucket{le="..."}), one set
// per kind of quantity, so that the same kind of metric is cut the same way
// in every component and a board can compare them.
//
// Each function returns a fresh slice; a bucket set is chosen for what the
// metric measures:
//
//	Request   HTTP calls and single deliveries: 5ms .. 30s
//	Fast      in-process work such as applying one change: 0.5ms .. 5s
//	Delivery  from commit to delivery, backlog included: 10ms .. 1h
//	Wait      a quote's time in a queue: 1s .. 24h
//	Run       one price calculation: 10ms .. 1h
//	Rows      a count of rows per poll: 0 .. 10000
//	Bytes     an uploaded file's size: 1 KiB .. 256 MiB
//
// A value above the largest bound lands only in the +Inf bucket, so
// histogram_quantile answers the largest bound for it: the bounds reach
// past each metric's alert thresholds.
package buckets

// Request returns the bounds for HTTP requests and single deliveries, in
// seconds: 5ms to 30s.
func Request() []float64 {
	return []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
}

// Fast returns the bounds for in-process work, in seconds: 0.5ms to 5s.
func Fast() []float64 {
	return []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}
}

// Delivery returns the bounds for the time from a commit to its delivery,
// backlog and retries included, in seconds: 10ms to 1h.
func Delivery() []float64 {
	return []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}
}

// Wait returns the bounds for a quote's time in a queue, in seconds: 1s to
// 24h (the legacy MES's queue grows by hours).
func Wait() []float64 {
	return []float64{1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800, 86400}
}

// Run returns the bounds for one price calculation, in seconds: 10ms
// (instant mesh quotes) to 1h (a complex model on the legacy calculator).
func Run() []float64 {
	return []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 180, 600, 1800, 3600}
}

// Rows returns the bounds for a number of rows: 0 to 10000.
func Rows() []float64 {
	return []float64{0, 1, 5, 10, 50, 100, 500, 1000, 5000, 10000}
}

// Bytes returns the bounds for a file's size in bytes: 1 KiB to 256 MiB,
// by factors of four.
func Bytes() []float64 {
	out := make([]float64, 0, 10)
	for b := 1024.0; b <= 256<<20; b *= 4 {
		out = append(out, b)
	}
	return out
}
