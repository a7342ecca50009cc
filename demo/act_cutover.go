package demo

// CutoverReport is what the cutover act showed.
type CutoverReport struct{}
