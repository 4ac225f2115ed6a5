package controller

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
)

func TestEveryTransitionIsRecordedInLastTransition(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	startOperator(t, ns)
	tg := newTarget(t)
	createBreaker(t, ns, "why", breakerSpec(tg.url("/why")))
	cb := waitState(t, ns, "why", circuitv1alpha1.StateClosed, 10*time.Second)
	g.Expect(cb.Status.LastTransition).To(BeNil(), "a new breaker starts Closed without a transition")

	tg.healthy.Store(false)
	cb = waitState(t, ns, "why", circuitv1alpha1.StateOpen, 10*time.Second)
	g.Expect(cb.Status.LastTransition).To(Equal(&circuitv1alpha1.LastTransition{
		From: circuitv1alpha1.StateClosed, To: circuitv1alpha1.StateOpen,
		Reason: circuitv1alpha1.ReasonThresholdReached, Time: *cb.Status.LastTransitionTime,
	}))

	tg.healthy.Store(true)
	g.Eventually(func(g Gomega) {
		cb := getBreaker(g, ns, "why")
		g.Expect(cb.Status.State).To(Equal(circuitv1alpha1.StateClosed))
		g.Expect(cb.Status.LastTransition).To(Equal(&circuitv1alpha1.LastTransition{
			From: circuitv1alpha1.StateHalfOpen, To: circuitv1alpha1.StateClosed,
			Reason: circuitv1alpha1.ReasonTrialsSucceeded, Time: *cb.Status.LastTransitionTime,
		}))
	}).WithTimeout(10 * time.Second).WithPolling(20 * time.Millisecond).Should(Succeed())

	cb = getBreaker(g, ns, "why")
	cb.Spec.Mode = circuitv1alpha1.ModeForcedOpen
	g.Expect(k8sClient.Update(context.Background(), cb)).To(Succeed())
	g.Eventually(func(g Gomega) {
		lt := getBreaker(g, ns, "why").Status.LastTransition
		g.Expect(lt).NotTo(BeNil())
		g.Expect(lt.Reason).To(Equal(circuitv1alpha1.ReasonForcedOpen))
	}).WithTimeout(10 * time.Second).Should(Succeed())

	// `kubectl get -o wide` shows the reason in its REASON column, at priority 1.
	reason, priority := tableColumn(t, ns, "why", "Reason")
	g.Expect(reason).To(Equal(string(circuitv1alpha1.ReasonForcedOpen)))
	g.Expect(priority).To(Equal(int32(1)))
}

// tableColumn asks the API server for the breaker as kubectl's Table and
// returns the cell and priority of the named column.
func tableColumn(t *testing.T, ns, name, column string) (cell any, priority int32) {
	t.Helper()
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	url := strings.TrimSuffix(cfg.Host, "/") + "/apis/" + circuitv1alpha1.GroupVersion.String() + "/namespaces/" + ns + "/circuitbreakers/" + name
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	var table metav1.Table
	if err := json.Unmarshal(body, &table); err != nil || len(table.Rows) != 1 {
		t.Fatalf("table of %s/%s at %s: %v (%d rows): %.200s", ns, name, url, err, len(table.Rows), body)
	}
	for i, c := range table.ColumnDefinitions {
		if c.Name == column {
			return table.Rows[0].Cells[i], int32(c.Priority)
		}
	}
	t.Fatalf("no column %q in %+v", column, table.ColumnDefinitions)
	return nil, 0
}
