package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/resilience-dev/breaker-operator/internal/ring"
)

// memberFlags are the flags of a sharded ring's member.
type memberFlags struct {
	enabled                      bool
	namespace, id                string
	renewInterval, leaseDuration time.Duration
}

func (f *memberFlags) bind(fs *flag.FlagSet) {
	fs.BoolVar(&f.enabled, "sharding", false,
		"Run as a member of a ring of managers that share the breakers: every replica is active and owns the breakers whose "+
			"UID hashes into its range (member Leases; KEP-5866 sharded list and watch where the API server has it). "+
			"Mutually exclusive with --leader-elect.")
	fs.StringVar(&f.namespace, "member-namespace", "",
		"Namespace of the member Leases under --sharding. Defaults to the manager's own namespace in a cluster, "+
			"and to \"default\" when the manager runs outside one.")
	fs.DurationVar(&f.renewInterval, "member-renew-interval", 2*time.Second,
		"How often a member renews its Lease and reads the ring again, under --sharding.")
	fs.DurationVar(&f.leaseDuration, "member-lease-duration", 10*time.Second,
		"How long a member's Lease keeps it live without renewal, under --sharding (whole seconds): "+
			"a killed member's breakers are probed again within this plus one interval.")
	fs.StringVar(&f.id, "member-id", "",
		"This member's identity in the ring, under --sharding; defaults to the pod name ($POD_NAME, else the host name).")
}

// member is this manager's ring membership, to add to the manager; nil without --sharding.
func (f *memberFlags) member(cfg *rest.Config, scheme *runtime.Scheme) (*ring.Member, error) {
	if !f.enabled {
		return nil, nil
	}
	if f.renewInterval <= 0 || f.leaseDuration <= f.renewInterval {
		return nil, errors.New("--member-lease-duration must be longer than --member-renew-interval, and both positive")
	}
	id := f.id
	if id == "" {
		id = os.Getenv("POD_NAME")
	}
	if id == "" {
		var err error
		if id, err = os.Hostname(); err != nil {
			return nil, err
		}
	}
	if errs := validation.IsDNS1123Subdomain(ring.LeasePrefix + id); len(errs) > 0 {
		return nil, fmt.Errorf("member identity %q does not make a valid Lease name: %s", id, strings.Join(errs, "; "))
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	ns := leaseNamespace(f.namespace)
	if ns == "" {
		b, err := os.ReadFile(inClusterNamespaceFile)
		if err != nil {
			return nil, err
		}
		ns = string(b)
	}
	return &ring.Member{
		Identity: id, Namespace: ns, Client: c, ReleaseOnCancel: true,
		RenewInterval: f.renewInterval, LeaseDuration: f.leaseDuration,
	}, nil
}
