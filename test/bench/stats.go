package main

import (
	"math"
	"slices"
	"time"
)

// quantiles are the order statistics the report uses; durations are in milliseconds.
type quantiles struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// quantilesOf summarizes values (milliseconds) with nearest-rank percentiles.
func quantilesOf(values []float64) quantiles {
	if len(values) == 0 {
		return quantiles{}
	}
	v := slices.Clone(values)
	slices.Sort(v)
	return quantiles{Count: len(v), P50: rank(v, 0.50), P99: rank(v, 0.99), Max: v[len(v)-1]}
}

func rank(sorted []float64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// cadence is what the targets saw of one prober's schedule in a time window.
type cadence struct {
	// Delivered counts probes that arrived in the window; Missed counts the
	// probes due in it that never came (a gap of k intervals misses k-1).
	Delivered int `json:"delivered"`
	Missed    int `json:"missed"`
	// Lateness is, for each probe in the window, its gap to the one before
	// minus the interval, in milliseconds.
	Lateness quantiles `json:"latenessMs"`
	// Unprobed counts breakers with no probe at all in the window.
	Unprobed int `json:"unprobed"`
}

// DeliveredPercent is the share of the due probes that arrived.
func (c cadence) DeliveredPercent() float64 {
	if c.Delivered+c.Missed == 0 {
		return 0
	}
	return 100 * float64(c.Delivered) / float64(c.Delivered+c.Missed)
}

// cadenceIn measures, for the targets idx, the probes whose arrival lies in
// [from, to): the gap from each to its predecessor (which may lie before
// from), and the probes missing from the window.
func cadenceIn(times [][]int64, idx []int, from, to time.Time, interval time.Duration) cadence {
	var c cadence
	var late []float64
	a, b := from.UnixNano(), to.UnixNano()
	iv := float64(interval)
	for _, i := range idx {
		ts := times[i]
		k := firstAtOrAfter(ts, a)
		prev := int64(0)
		if k > 0 {
			prev = ts[k-1]
		}
		inWindow := 0
		for ; k < len(ts) && ts[k] < b; k++ {
			inWindow++
			if prev != 0 {
				gap := float64(ts[k] - prev)
				late = append(late, (gap-iv)/float64(time.Millisecond))
				c.Missed += max(int(math.Round(gap/iv))-1, 0)
			}
			prev = ts[k]
		}
		c.Delivered += inWindow
		if inWindow == 0 {
			c.Unprobed++
		}
		// Probes due after the last one that never came.
		switch {
		case prev == 0:
			c.Missed += int(float64(b-a) / iv)
		case float64(b-prev) > 1.5*iv:
			c.Missed += int(math.Round(float64(b-prev)/iv)) - 1
		}
	}
	c.Lateness = quantilesOf(late)
	return c
}

// firstAtOrAfter is the index of the first time >= t in sorted ts.
func firstAtOrAfter(ts []int64, t int64) int {
	i, _ := slices.BinarySearch(ts, t)
	return i
}

// lastBefore returns the last time < t in sorted ts, or 0.
func lastBefore(ts []int64, t int64) int64 {
	i := firstAtOrAfter(ts, t)
	if i == 0 {
		return 0
	}
	return ts[i-1]
}
