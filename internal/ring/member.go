package ring

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/sharding"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// Label marks the member Leases of a ring; its value names the ring.
const Label = "circuit.resilience.dev/ring"

// Name is the ring of breaker-operator's managers.
const Name = "breaker-operator"

// LeasePrefix starts the name of every member's Lease; the identity follows.
const LeasePrefix = "breaker-operator-member-"

// The member Leases live in the manager's namespace, where the leader
// election Role (config/rbac/leader_election_role.yaml) already grants what
// they need: no cluster-wide right to Leases, which would let the manager
// write any controller's leader election.
// Member is this manager's place in the ring: it holds its Lease, reads the
// others' and tells which breakers are its own. It runs as a manager Runnable
// on every replica (it needs no leader election).
type Member struct {
	// Identity names this member; unique in the ring (the pod name).
	Identity string
	// Namespace holds the member Leases.
	Namespace string
	// RenewInterval is how often the Lease is renewed and the ring read again.
	RenewInterval time.Duration
	// LeaseDuration is how long a Lease not renewed keeps its member live.
	LeaseDuration time.Duration
	// ReleaseOnCancel deletes the Lease when the member stops, so that the
	// others take its breakers over at once. Tests leave it off to play a kill.
	ReleaseOnCancel bool
	// Client reads and writes Leases, uncached.
	Client client.Client
	// Clock tells the time; tests may inject a fake one.
	Clock clock.PassiveClock

	mu        sync.Mutex
	members   []string // live members, sorted; nil while this member is not one of them
	selector  sharding.Selector
	listeners []func()
	// serverFilters: the API server applies this member's shard selector.
	serverFilters atomic.Bool
	// tickMu serializes the renewals; lastRenew is the last that succeeded.
	tickMu    sync.Mutex
	lastRenew time.Time
}

// Members are the live members as last read, sorted; empty while this member
// is not live itself.
func (m *Member) Members() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.members)
}

// Selector is this member's shard selector; nil while it owns nothing.
func (m *Member) Selector() sharding.Selector {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.selector
}

// Owns reports whether obj (a breaker) is this member's: its UID hashes into
// this member's range. Before the member has read the ring, it owns nothing.
func (m *Member) Owns(obj runtime.Object) bool {
	sel := m.Selector()
	if sel == nil {
		return false
	}
	ok, err := sel.Matches(obj)
	return err == nil && ok
}

// OnChange registers f, called (on the member's goroutine) after every change
// of the live members, this member's included.
func (m *Member) OnChange(f func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.listeners = append(m.listeners, f)
}

// NeedLeaderElection is false: every member runs.
func (m *Member) NeedLeaderElection() bool { return false }

// Start renews the Lease and reads the ring every RenewInterval until ctx ends,
// then deletes the Lease if ReleaseOnCancel.
func (m *Member) Start(ctx context.Context) error {
	log := logf.FromContext(ctx).WithName("ring").WithValues("member", m.Identity)
	t := time.NewTicker(m.RenewInterval)
	defer t.Stop()
	for {
		m.tick(ctx)
		select {
		case <-ctx.Done():
			m.set(nil)
			if m.ReleaseOnCancel {
				m.release(log)
			}
			return nil
		case <-t.C:
		}
	}
}

// join renews the Lease and reads the ring once, unless the member is live
// already. The breakers' informer calls it before its first list, which the
// manager makes before it starts the member: a list with the member's range
// at once, rather than of every breaker.
func (m *Member) join(ctx context.Context) {
	if m.Selector() == nil {
		m.tick(ctx)
	}
}

// tick renews the Lease and reads the ring's live members.
func (m *Member) tick(ctx context.Context) {
	m.tickMu.Lock()
	defer m.tickMu.Unlock()
	if m.Clock == nil {
		m.Clock = clock.RealClock{}
	}
	log := logf.FromContext(ctx).WithName("ring").WithValues("member", m.Identity)
	// The renewal counts from before the request, as the others count it from
	// the renewTime written: this member stops owning no later than they take over.
	start := m.Clock.Now()
	if err := m.renew(ctx, start); err != nil {
		if ctx.Err() == nil {
			log.Error(err, "Failed to renew the member Lease")
		}
	} else {
		m.lastRenew = start
	}
	live, err := m.live(ctx)
	if err != nil && ctx.Err() == nil {
		log.Error(err, "Failed to read the member Leases")
	}
	switch {
	case m.Clock.Since(m.lastRenew) >= m.LeaseDuration:
		// Our own Lease has expired for the others: they own our breakers now.
		m.set(nil)
	case err == nil:
		if !slices.Contains(live, m.Identity) {
			live = append(live, m.Identity) // renewed a moment ago
			slices.Sort(live)
		}
		m.set(live)
	}
}

// set records the live members and tells the listeners if they changed.
func (m *Member) set(live []string) {
	m.mu.Lock()
	if slices.Equal(live, m.members) {
		m.mu.Unlock()
		return
	}
	m.members = live
	m.selector, _ = Selector(live, m.Identity)
	if len(live) == 0 {
		m.selector = nil
	}
	listeners := slices.Clone(m.listeners)
	m.mu.Unlock()
	logf.Log.WithName("ring").Info("Ring changed", "member", m.Identity, "members", live)
	for _, f := range listeners {
		f()
	}
}

func (m *Member) leaseName() string { return LeasePrefix + m.Identity }

// renew creates this member's Lease or moves its renewTime to at.
func (m *Member) renew(ctx context.Context, at time.Time) error {
	now := metav1.NewMicroTime(at)
	lease := &coordinationv1.Lease{}
	err := m.Client.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: m.leaseName()}, lease)
	if apierrors.IsNotFound(err) {
		lease = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: m.Namespace, Name: m.leaseName(), Labels: map[string]string{Label: Name}},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity:       ptr.To(m.Identity),
				LeaseDurationSeconds: ptr.To(leaseSeconds(m.LeaseDuration)),
				AcquireTime:          &now,
				RenewTime:            &now,
			},
		}
		return m.Client.Create(ctx, lease)
	}
	if err != nil {
		return err
	}
	lease.Spec.HolderIdentity = ptr.To(m.Identity)
	lease.Spec.LeaseDurationSeconds = ptr.To(leaseSeconds(m.LeaseDuration))
	lease.Spec.RenewTime = &now
	return m.Client.Update(ctx, lease)
}

// leaseSeconds is d in whole seconds, at least one (the Lease's unit).
func leaseSeconds(d time.Duration) int32 {
	return int32(max((d+time.Second-1)/time.Second, 1))
}

// live lists the ring's Leases and returns the identities of those unexpired.
func (m *Member) live(ctx context.Context) ([]string, error) {
	list := &coordinationv1.LeaseList{}
	if err := m.Client.List(ctx, list, client.InNamespace(m.Namespace), client.MatchingLabels{Label: Name}); err != nil {
		return nil, err
	}
	return LiveMembers(list.Items, m.Clock.Now()), nil
}

// LiveMembers are the holders of the Leases unexpired at now, sorted.
func LiveMembers(leases []coordinationv1.Lease, now time.Time) []string {
	var out []string
	for _, l := range leases {
		s := l.Spec
		if s.HolderIdentity == nil || *s.HolderIdentity == "" || s.RenewTime == nil || s.LeaseDurationSeconds == nil {
			continue
		}
		if now.Before(s.RenewTime.Add(time.Duration(*s.LeaseDurationSeconds) * time.Second)) {
			out = append(out, *s.HolderIdentity)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// release deletes this member's Lease, on a clean shutdown.
func (m *Member) release(log interface{ Error(error, string, ...any) }) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: m.Namespace, Name: m.leaseName()}}
	if err := m.Client.Delete(ctx, lease); err != nil && !apierrors.IsNotFound(err) {
		log.Error(err, "Failed to delete the member Lease")
	}
}
