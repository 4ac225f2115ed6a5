package v1alpha1

// Mode is who decides a breaker's state: its policy (Auto) or the user.
// +kubebuilder:validation:Enum=Auto;ForcedOpen;ForcedClosed
type Mode string

// The modes of a breaker.
const (
	// ModeAuto: the policy (threshold, failureRate, slowProbe, timeout, backoff) decides.
	ModeAuto Mode = "Auto"
	// ModeForcedOpen: the circuit is Open and stays Open; nothing is probed.
	ModeForcedOpen Mode = "ForcedOpen"
	// ModeForcedClosed: the circuit is Closed and stays Closed; probes go on as a dry run.
	ModeForcedClosed Mode = "ForcedClosed"
)

// FailureRate opens a Closed circuit by the share of failed probes among the
// last window probes, successes before the first failure included: at a
// failure, when at least minimumProbes probes have been recorded since the
// circuit started counting (it was created, closed or reset) and at least
// percent of the last min(window, recorded) failed.
// +kubebuilder:validation:XValidation:rule="!has(self.minimumProbes) || self.minimumProbes <= self.window",message="failureRate.minimumProbes must not exceed failureRate.window",fieldPath=".minimumProbes"
type FailureRate struct {
	// window is how many of the last probes are judged; from 2 to 100.
	// +required
	// +kubebuilder:validation:Minimum=2
	// +kubebuilder:validation:Maximum=100
	Window int32 `json:"window,omitempty"`

	// minimumProbes is how many probes must have been recorded since the circuit
	// started counting (it was created, closed or reset) before the rate can
	// open it. Defaults to window; from 1 to window.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	MinimumProbes int32 `json:"minimumProbes,omitempty"`

	// percent opens the circuit when at least this share of the last window
	// probes (of all recorded, while fewer than window are) failed; from 1 to 100.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	Percent int32 `json:"percent,omitempty"`
}

// Backoff lengthens each Open period after a failed trial.
type Backoff struct {
	// multiplier makes the Open period timeout * multiplier^reopens (capped by
	// maxTimeout). Defaults to 2; an integer from 1 to 10.
	// +optional
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10
	Multiplier int32 `json:"multiplier,omitempty"`

	// maxTimeout caps the Open period, as a Go duration string ("10m"); at least
	// timeout and at most 24h.
	// +required
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]{1,6}([.][0-9]{1,9})?(ns|us|ms|s|m|h))+$') || (duration(self) >= duration('1s') && duration(self) <= duration('24h'))",message="backoff.maxTimeout must be at least 1s and at most 24h"
	MaxTimeout GoDuration `json:"maxTimeout,omitempty"`

	// jitterPercent spreads each Open period by up to plus or minus this share of
	// it, fixed per opening (derived from the breaker's UID and openedAt, so a
	// restart keeps it). Defaults to 0; from 0 to 50.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=50
	//nolint:kubeapilinter // 0 and unset mean the same (no jitter), so no pointer is needed.
	JitterPercent int32 `json:"jitterPercent,omitempty"`
}
