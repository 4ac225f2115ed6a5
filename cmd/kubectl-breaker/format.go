package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/controller-runtime/pkg/client"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
)

// maxTransitions is how many recent transitions `status` shows.
const maxTransitions = 10

// writeList prints one line per breaker.
func writeList(out io.Writer, items []circuitv1alpha1.CircuitBreaker, withNamespace bool, now time.Time) error {
	w := printers.GetNewTabWriter(out)
	header := "NAME\tSTATE\tFAILURES\tAVAILABLE\tRETRY IN\tTARGET\tAGE"
	if withNamespace {
		header = "NAMESPACE\t" + header
	}
	fmt.Fprintln(w, header)
	for i := range items {
		cb := &items[i]
		if withNamespace {
			fmt.Fprintf(w, "%s\t", cb.Namespace)
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", cb.Name, orDash(string(cb.Status.State)), cb.Status.ConsecutiveFailures,
			conditionStatus(cb, circuitv1alpha1.ConditionAvailable), retryIn(cb, now), orDash(cb.Status.Target), age(cb.CreationTimestamp.Time, now))
	}
	return w.Flush()
}

// writeStatus prints a breaker in detail.
func writeStatus(out io.Writer, cb *circuitv1alpha1.CircuitBreaker, events []corev1.Event, now time.Time) error {
	w := printers.GetNewTabWriter(out)
	st := cb.Status
	fmt.Fprintf(w, "Name:\t%s\n", cb.Name)
	fmt.Fprintf(w, "Namespace:\t%s\n", cb.Namespace)
	state := orDash(string(st.State))
	if st.LastTransitionTime != nil {
		state += fmt.Sprintf(" (for %s)", age(st.LastTransitionTime.Time, now))
	}
	fmt.Fprintf(w, "State:\t%s\n", state)
	fmt.Fprintf(w, "Target:\t%s\n", orDash(st.Target))
	fmt.Fprintf(w, "Consecutive failures:\t%d (threshold %d)\n", st.ConsecutiveFailures, cb.Spec.Threshold)
	fmt.Fprintf(w, "Consecutive successes:\t%d (successThreshold %d)\n", st.ConsecutiveSuccesses, cb.Spec.SuccessThreshold)
	if st.NextRetryTime != nil {
		fmt.Fprintf(w, "Next retry:\t%s (%s)\n", retryIn(cb, now), st.NextRetryTime.UTC().Format(time.RFC3339))
	}
	if lp := st.LastProbe; lp != nil {
		fmt.Fprintf(w, "Last probe:\t%s (%s) %s ago, took %s\n", lp.Result, orDash(lp.Reason), age(lp.Time.Time, now), lp.Latency.Duration)
	}
	for _, typ := range []string{circuitv1alpha1.ConditionReady, circuitv1alpha1.ConditionAvailable} {
		if c := meta(cb, typ); c != nil {
			fmt.Fprintf(w, "%s:\t%s (%s) %s\n", typ, c.Status, c.Reason, c.Message)
		}
	}
	if cb.Spec.Target.Service != nil {
		fmt.Fprintf(w, "Endpoints:\t%d probed, %d failing\n", st.EndpointsTotal, st.EndpointsFailing)
		fmt.Fprintln(w, "  ADDRESS\tPORT\tTARGET\tRESULT\tREASON\tFAILURES")
		for _, e := range st.Endpoints {
			ref := "-"
			if e.TargetRef != nil {
				ref = e.TargetRef.Kind + "/" + e.TargetRef.Name
			}
			fmt.Fprintf(w, "  %s\t%d\t%s\t%s\t%s\t%d\n", e.Address, e.Port, ref, e.LastResult, orDash(e.Reason), e.ConsecutiveFailures)
		}
	}
	fmt.Fprintln(w, "Transitions:")
	if len(events) == 0 {
		fmt.Fprintln(w, "  <none>")
	} else {
		fmt.Fprintln(w, "  AGE\tTYPE\tREASON\tMESSAGE")
	}
	for _, e := range events {
		fmt.Fprintf(w, "  %s\t%s\t%s\t%s\n", age(eventTime(e), now), e.Type, e.Reason, e.Message)
	}
	return w.Flush()
}

// transitions returns the breaker's most recent Circuit* Events, oldest first.
func transitions(ctx context.Context, c client.Client, cb *circuitv1alpha1.CircuitBreaker) ([]corev1.Event, error) {
	list := &corev1.EventList{}
	if err := c.List(ctx, list, client.InNamespace(cb.Namespace),
		client.MatchingFields{"involvedObject.name": cb.Name, "involvedObject.kind": "CircuitBreaker"}); err != nil {
		return nil, fmt.Errorf("listing the Events of %s/%s: %w", cb.Namespace, cb.Name, err)
	}
	var out []corev1.Event
	for _, e := range list.Items {
		if e.InvolvedObject.UID == cb.UID && strings.HasPrefix(e.Reason, "Circuit") {
			out = append(out, e)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return eventTime(out[i]).Before(eventTime(out[j])) })
	if len(out) > maxTransitions {
		out = out[len(out)-maxTransitions:]
	}
	return out, nil
}

// eventTime is when an Event last happened, whichever API wrote it.
func eventTime(e corev1.Event) time.Time {
	switch {
	case e.Series != nil && !e.Series.LastObservedTime.IsZero():
		return e.Series.LastObservedTime.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	}
	return e.FirstTimestamp.Time
}

// retryIn is the time left until nextRetryTime, "due" once it has passed,
// and "-" when the breaker is not Open.
func retryIn(cb *circuitv1alpha1.CircuitBreaker, now time.Time) string {
	if cb.Status.NextRetryTime == nil {
		return "-"
	}
	left := cb.Status.NextRetryTime.Sub(now)
	if left <= 0 {
		return "due"
	}
	return left.Round(time.Second).String()
}

func meta(cb *circuitv1alpha1.CircuitBreaker, typ string) *metav1.Condition {
	for i := range cb.Status.Conditions {
		if cb.Status.Conditions[i].Type == typ {
			return &cb.Status.Conditions[i]
		}
	}
	return nil
}

func conditionStatus(cb *circuitv1alpha1.CircuitBreaker, typ string) string {
	if c := meta(cb, typ); c != nil {
		return string(c.Status)
	}
	return "-"
}

func age(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return duration.HumanDuration(now.Sub(t))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
