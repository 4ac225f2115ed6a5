package metrics

import (
	"testing"

	. "github.com/onsi/gomega"
)

func TestSetEnforcementIsOneHotAndGoesAwayWithEnforce(t *testing.T) {
	g := NewWithT(t)
	SetEnforcement("enforce", "cb", "Target", 2)
	SetEnforcement("enforce", "other", "None", 0)
	g.Expect(series(t, Routing, "enforce", "cb")).To(Equal(map[string]float64{
		"routing=Target": 1, "routing=Fallback": 0, "routing=None": 0}))
	g.Expect(series(t, EndpointsEjected, "enforce", "cb")).To(Equal(map[string]float64{"": 2}))

	SetEnforcement("enforce", "cb", "Fallback", 0)
	g.Expect(series(t, Routing, "enforce", "cb")).To(Equal(map[string]float64{
		"routing=Target": 0, "routing=Fallback": 1, "routing=None": 0}))
	g.Expect(series(t, EndpointsEjected, "enforce", "cb")).To(Equal(map[string]float64{"": 0}))

	// Removing spec.enforce removes the breaker's series, and only its own.
	SetEnforcement("enforce", "cb", "", 0)
	g.Expect(series(t, Routing, "enforce", "cb")).To(BeEmpty())
	g.Expect(series(t, EndpointsEjected, "enforce", "cb")).To(BeEmpty())
	g.Expect(series(t, Routing, "enforce", "other")).To(HaveLen(3))

	Forget("enforce", "other")
	g.Expect(series(t, Routing, "enforce", "other")).To(BeEmpty())
	g.Expect(series(t, EndpointsEjected, "enforce", "other")).To(BeEmpty())
}
