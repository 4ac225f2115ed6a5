package metrics

import (
	"runtime"
	"strconv"
	"testing"
	"time"
)

// The series of 10,000 breakers, each probed and with its state set, stay
// within 2 KiB of heap per breaker (about 0.5 KiB measured; a CounterVec and
// HistogramVec per family took 15 KiB).
func TestSeriesOfManyBreakersStaySmall(t *testing.T) {
	if testing.Short() {
		t.Skip("creates the series of 10,000 breakers")
	}
	const n = 10000
	heap := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	for i := range n {
		name := "b-" + strconv.Itoa(i)
		SetState("memory", name, "Closed", 0)
		ObserveProbe("memory", name, true, "ok", time.Millisecond)
		ObserveProbe("memory", name, false, "timeout", time.Second)
		ObserveTransition("memory", name, "Closed", "Open")
		SetEnforcement("memory", name, "", 0)
	}
	perBreaker := float64(heap()-before) / n
	for i := range n {
		Forget("memory", "b-"+strconv.Itoa(i))
	}
	t.Logf("%.0f bytes of heap per breaker", perBreaker)
	if perBreaker > 2048 {
		t.Fatalf("%.0f bytes of heap per breaker, want at most 2048", perBreaker)
	}
}

// A state outside States still gives the breaker its state series, all at 0,
// and its failure count.
func TestSetStateWithAnUnknownStateZeroesEveryStateSeries(t *testing.T) {
	SetState("unknown-state", "cb", "", 2)
	defer Forget("unknown-state", "cb")
	got := series(t, State, "unknown-state", "cb")
	want := map[string]float64{"state=Closed": 0, "state=Open": 0, "state=HalfOpen": 0}
	if len(got) != len(want) || got["state=Closed"] != 0 || got["state=Open"] != 0 || got["state=HalfOpen"] != 0 {
		t.Fatalf("state series %v, want %v", got, want)
	}
	if f := series(t, ConsecutiveFailures, "unknown-state", "cb"); f[""] != 2 {
		t.Fatalf("consecutive failures %v, want 2", f)
	}
}
