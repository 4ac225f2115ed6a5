package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	// RingMembers is how many live members this member sees in the ring.
	RingMembers = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "circuitbreaker_ring_members",
		Help: "Live members of the sharded ring as this member last read them (--sharding); 0 while it is not live itself.",
	}, []string{"member"})
	// OwnedBreakers is how many breakers this member owns (probes and writes).
	OwnedBreakers = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "circuitbreaker_owned_breakers",
		Help: "Breakers this member of the sharded ring owns: it probes them and writes their status (--sharding).",
	}, []string{"member"})
)

func init() {
	ctrlmetrics.Registry.MustRegister(RingMembers, OwnedBreakers)
}
