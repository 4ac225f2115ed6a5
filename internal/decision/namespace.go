package decision

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/resilience-dev/breaker-operator/internal/probe"
)

// MaxAllowedCIDRs bounds the list a Namespace's allowed-ranges annotation may hold.
const MaxAllowedCIDRs = 64

// ParseAllowedCIDRs parses an annotation value such as "10.20.0.0/16, 192.168.5.0/24".
func ParseAllowedCIDRs(value string) ([]netip.Prefix, error) {
	var cidrs []string
	for _, c := range strings.Split(value, ",") {
		if c = strings.TrimSpace(c); c != "" {
			cidrs = append(cidrs, c)
		}
	}
	if len(cidrs) == 0 {
		return nil, fmt.Errorf("no CIDR given")
	}
	if len(cidrs) > MaxAllowedCIDRs {
		return nil, fmt.Errorf("%d CIDRs given", len(cidrs))
	}
	prefixes, err := probe.ParsePrefixes(cidrs)
	if err != nil {
		return nil, fmt.Errorf("a CIDR does not parse")
	}
	return prefixes, nil
}
