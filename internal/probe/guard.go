package probe

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// ErrDenied is returned when a probe would connect to a refused address.
var ErrDenied = errors.New("address refused by the probe guard")

// DefaultDenyCIDRs are refused unless an operator says otherwise: link-local
// (which holds the cloud metadata endpoints) and the unspecified addresses.
var DefaultDenyCIDRs = []string{"169.254.0.0/16", "fe80::/10", "0.0.0.0/32", "::/128"}

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// Guard decides which resolved addresses a probe may connect to. It is checked
// at connect time, on the IP actually dialled, so DNS rebinding cannot slip past.
type Guard struct {
	deny, allow   []netip.Prefix
	allowLoopback bool
}

// NewGuard builds a guard. An address in deny is refused; when allow is not
// empty, an address outside it is refused too (deny wins when both match).
// Loopback is refused unless allowLoopback is set.
func NewGuard(deny, allow []string, allowLoopback bool) (*Guard, error) {
	g := &Guard{allowLoopback: allowLoopback}
	var err error
	if g.deny, err = parsePrefixes(deny); err != nil {
		return nil, fmt.Errorf("deny list: %w", err)
	}
	if g.allow, err = parsePrefixes(allow); err != nil {
		return nil, fmt.Errorf("allow list: %w", err)
	}
	return g, nil
}

func parsePrefixes(cidrs []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(cidrs))
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return nil, err
		}
		p = p.Masked()
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			// Allowed unmaps the address it judges, so an IPv4-mapped prefix must be
			// unmapped too, or it would never match.
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p)
	}
	return out, nil
}

// Allowed reports whether a probe may connect to ip.
func (g *Guard) Allowed(ip netip.Addr) bool {
	if g == nil {
		return true
	}
	ip = ip.Unmap().WithZone("")
	if !g.allowLoopback && contains(loopback, ip) {
		return false
	}
	if contains(g.deny, ip) {
		return false
	}
	return len(g.allow) == 0 || contains(g.allow, ip)
}

func contains(prefixes []netip.Prefix, ip netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// control is a net.Dialer Control hook: it runs after name resolution, just
// before connect, with the address about to be dialled.
func (g *Guard) control(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return ErrDenied
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !g.Allowed(ip) {
		return ErrDenied
	}
	return nil
}
