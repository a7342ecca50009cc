package mesh

import (
	"math/big"
	"testing"
)

// exactSums computes a mesh's volume and area from its float32 vertices
// with big.Float: every product and sum of the volume is exact (checked
// through big.Float's accuracy), and each triangle's area is a square
// root taken to 128 bits. Faster than exactVolume's big.Rat, for the real
// models.
func exactSums(t *testing.T, m *Mesh) (volume, area float64) {
	const (
		termPrec = 1024 // a triangle's terms, exponents of real files included
		sumPrec  = 4096 // the sum: wide enough for the exponents of real files
	)
	nf := func(p uint) *big.Float { return new(big.Float).SetPrec(p) }
	vol, ar := nf(sumPrec), nf(sumPrec)
	var u, v, a [3]*big.Float
	var n [3]*big.Float
	for i := range 3 {
		u[i], v[i], a[i], n[i] = nf(termPrec), nf(termPrec), nf(termPrec), nf(termPrec)
	}
	p, q, term, sq := nf(termPrec), nf(termPrec), nf(termPrec), nf(termPrec)
	lost := false
	exact := func(f *big.Float, what string) {
		if f.Acc() != big.Exact && !lost {
			t.Errorf("exact oracle lost precision in %s", what) // Errorf: exactSums runs on several goroutines
			lost = true
		}
	}
	for _, tr := range m.Triangles {
		c0, c1, c2 := m.Vertices[tr[0]], m.Vertices[tr[1]], m.Vertices[tr[2]]
		for i := range 3 {
			a[i].SetFloat64(float64(c0[i]))
			u[i].SetFloat64(float64(c1[i]))
			u[i].Sub(u[i], a[i])
			v[i].SetFloat64(float64(c2[i]))
			v[i].Sub(v[i], a[i])
		}
		sq.SetFloat64(0)
		term.SetFloat64(0)
		for i := range 3 {
			j, k := (i+1)%3, (i+2)%3
			p.Mul(u[j], v[k])
			q.Mul(u[k], v[j])
			n[i].Sub(p, q)
			exact(n[i], "a cross product")
			p.Mul(a[i], n[i])
			term.Add(term, p)
			exact(term, "a volume term")
			q.Mul(n[i], n[i])
			sq.Add(sq, q)
			exact(sq, "a squared norm")
		}
		vol.Add(vol, term)
		exact(vol, "the volume")
		if sq.Sign() > 0 {
			r := nf(128).Sqrt(sq)
			ar.Add(ar, r)
		}
	}
	vol.Quo(vol, big.NewFloat(6))
	ar.Quo(ar, big.NewFloat(2))
	volume, _ = vol.Float64()
	area, _ = ar.Float64()
	return volume, area
}
