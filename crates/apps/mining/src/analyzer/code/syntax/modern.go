// Go 1.23: generics, range over integers and functions, min/max builtins.
package modern

import "iter"

type Number interface {
	~int | ~int64 | ~float64
}

func Sum[T Number](values []T) T {
	var total T
	for _, v := range values {
		total += v
	}
	return total
}

func Count(n int) iter.Seq[int] {
	return func(yield func(int) bool) {
		for i := range n {
			if !yield(i) {
				return
			}
		}
	}
}

func Clamp(v, lo, hi int) int { return max(lo, min(v, hi)) }
