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
	o := &tabOut{w: printers.GetNewTabWriter(out)}
	header := "NAME\tSTATE\tFAILURES\tAVAILABLE\tRETRY IN\tTARGET\tAGE"
	if withNamespace {
		header = "NAMESPACE\t" + header
	}
	o.println(header)
	for i := range items {
		cb := &items[i]
		if withNamespace {
			o.printf("%s\t", cb.Namespace)
		}
		o.printf("%s\t%s\t%d\t%s\t%s\t%s\t%s\n", cb.Name, orDash(string(cb.Status.State)), cb.Status.ConsecutiveFailures,
			conditionStatus(cb, circuitv1alpha1.ConditionAvailable), retryIn(cb, now), orDash(cb.Status.Target), age(cb.CreationTimestamp.Time, now))
	}
	return o.flush()
}

// writeStatus prints a breaker in detail.
func writeStatus(out io.Writer, cb *circuitv1alpha1.CircuitBreaker, events []corev1.Event, now time.Time) error {
	o := &tabOut{w: printers.GetNewTabWriter(out)}
	st := cb.Status
	o.printf("Name:\t%s\n", cb.Name)
	o.printf("Namespace:\t%s\n", cb.Namespace)
	state := orDash(string(st.State))
	if st.LastTransitionTime != nil {
		state += fmt.Sprintf(" (for %s)", age(st.LastTransitionTime.Time, now))
	}
	o.printf("State:\t%s\n", state)
	if lt := st.LastTransition; lt != nil {
		o.printf("Last transition:\t%s -> %s (%s) %s ago\n", lt.From, lt.To, lt.Reason, age(lt.Time.Time, now))
	}
	o.printf("Target:\t%s\n", orDash(st.Target))
	if st.ProbedBy != "" {
		o.printf("Probed by:\t%s\n", st.ProbedBy)
	}
	o.printf("Consecutive failures:\t%d (threshold %d)\n", st.ConsecutiveFailures, cb.Spec.Threshold)
	o.printf("Consecutive successes:\t%d (successThreshold %d)\n", st.ConsecutiveSuccesses, cb.Spec.SuccessThreshold)
	if st.NextRetryTime != nil {
		o.printf("Next retry:\t%s (%s)\n", retryIn(cb, now), st.NextRetryTime.UTC().Format(time.RFC3339))
	}
	if lp := st.LastProbe; lp != nil {
		o.printf("Last probe:\t%s (%s) %s ago, took %s\n", lp.Result, orDash(string(lp.Reason)), age(lp.Time.Time, now), lp.Latency.Duration)
	}
	for _, typ := range []string{circuitv1alpha1.ConditionReady, circuitv1alpha1.ConditionAvailable} {
		if c := meta(cb, typ); c != nil {
			o.printf("%s:\t%s (%s) %s\n", typ, c.Status, c.Reason, c.Message)
		}
	}
	if cb.Spec.Target.Service != nil {
		o.printf("Endpoints:\t%d probed, %d failing\n", st.EndpointsTotal, st.EndpointsFailing)
		o.println("  ADDRESS\tPORT\tTARGET\tRESULT\tREASON\tFAILURES")
		for _, e := range st.Endpoints {
			ref := "-"
			if e.TargetRef != nil {
				ref = e.TargetRef.Kind + "/" + e.TargetRef.Name
			}
			o.printf("  %s\t%d\t%s\t%s\t%s\t%d\n", e.Address, e.Port, ref, e.LastResult, orDash(string(e.Reason)), e.ConsecutiveFailures)
		}
	}
	o.println("Transitions:")
	if len(events) == 0 {
		o.println("  <none>")
	} else {
		o.println("  AGE\tTYPE\tREASON\tMESSAGE")
	}
	for _, e := range events {
		o.printf("  %s\t%s\t%s\t%s\n", age(eventTime(e), now), e.Type, e.Reason, e.Message)
	}
	return o.flush()
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

// tabOut writes a table and keeps the first write error, so that the
// printing code reads as a list of lines.
type tabOut struct {
	w interface {
		io.Writer
		Flush() error
	}
	err error
}

func (o *tabOut) printf(format string, args ...any) {
	if o.err == nil {
		_, o.err = fmt.Fprintf(o.w, format, args...)
	}
}

func (o *tabOut) println(line string) { o.printf("%s\n", line) }

func (o *tabOut) flush() error {
	if o.err != nil {
		return fmt.Errorf("writing the table: %w", o.err)
	}
	return o.w.Flush()
}
