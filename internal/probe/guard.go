package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
)

// ErrDenied is returned when a probe would connect to a refused address.
var ErrDenied = errors.New("address refused by the probe guard")

// BuiltinDenyCIDRs are always refused, whatever the flags say: link-local
// (which holds most cloud metadata endpoints), the unspecified addresses (which
// reach the host itself on Linux), and the metadata endpoints that live outside
// link-local: AWS's IPv6 instance metadata and time sync, Alibaba Cloud,
// Azure's wire server and Oracle Cloud. --probe-deny-cidrs adds to this list.
var BuiltinDenyCIDRs = []string{
	"169.254.0.0/16", "fe80::/10",
	"0.0.0.0/8", "::/128",
	"fd00:ec2::254/128", "fd00:ec2::23/128",
	"100.100.100.200/32",
	"168.63.129.16/32",
	"192.0.0.192/32",
}

var builtinDeny = mustPrefixes(BuiltinDenyCIDRs)

var loopback = mustPrefixes([]string{"127.0.0.0/8", "::1/128"})

// Prefixes of IPv6 addresses that carry an IPv4 address a gateway may forward
// to: NAT64's well-known prefix, IPv4-compatible addresses and 6to4.
var (
	nat64      = netip.MustParsePrefix("64:ff9b::/96")
	compatible = netip.MustParsePrefix("::/96")
	sixToFour  = netip.MustParsePrefix("2002::/16")
)

// Guard decides which resolved addresses a probe may connect to. It is checked
// at connect time, on the IP actually dialled, so DNS rebinding cannot slip past.
type Guard struct {
	deny, allow   []netip.Prefix
	allowLoopback bool
	// restrict, when set, is a further allow list (a namespace's, set by the
	// cluster admin); restricted tells an empty one (nothing allowed) from none.
	restrict   []netip.Prefix
	restricted bool
}

// NewGuard builds a guard. An address in BuiltinDenyCIDRs or deny is refused;
// when allow is not empty, an address outside it is refused too (deny wins when
// both match). Loopback is refused unless allowLoopback is set.
func NewGuard(deny, allow []string, allowLoopback bool) (*Guard, error) {
	g := &Guard{allowLoopback: allowLoopback}
	extra, err := ParsePrefixes(deny)
	if err != nil {
		return nil, fmt.Errorf("deny list: %w", err)
	}
	g.deny = append(append([]netip.Prefix{}, builtinDeny...), extra...)
	if g.allow, err = ParsePrefixes(allow); err != nil {
		return nil, fmt.Errorf("allow list: %w", err)
	}
	return g, nil
}

// Restrict returns a guard that also refuses every address outside allowed.
// Deny lists still win. A nil guard stays nil only if there is nothing to restrict.
func (g *Guard) Restrict(allowed []netip.Prefix) *Guard {
	r := &Guard{}
	if g != nil {
		*r = *g
	}
	r.restrict, r.restricted = allowed, true
	return r
}

// ParsePrefixes parses CIDRs, masking host bits. IPv4-mapped prefixes are
// unmapped, since the guard judges unmapped addresses.
func ParsePrefixes(cidrs []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(cidrs))
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(strings.TrimSpace(c))
		if err != nil {
			return nil, err
		}
		p = p.Masked()
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p)
	}
	return out, nil
}

func mustPrefixes(cidrs []string) []netip.Prefix {
	p, err := ParsePrefixes(cidrs)
	if err != nil {
		panic(err)
	}
	return p
}

// Allowed reports whether a probe may connect to ip. An address that embeds an
// IPv4 address (IPv4-mapped, NAT64, IPv4-compatible, 6to4) is allowed only if
// both it and the embedded address are.
func (g *Guard) Allowed(ip netip.Addr) bool {
	if g == nil {
		return true
	}
	ip = ip.Unmap().WithZone("")
	if embedded, ok := embeddedIPv4(ip); ok && !g.allowed(embedded) {
		return false
	}
	return g.allowed(ip)
}

func (g *Guard) allowed(ip netip.Addr) bool {
	switch {
	case !g.allowLoopback && contains(loopback, ip):
		return false
	case contains(g.deny, ip):
		return false
	case len(g.allow) > 0 && !contains(g.allow, ip):
		return false
	case g.restricted && !contains(g.restrict, ip):
		return false
	}
	return true
}

// embeddedIPv4 returns the IPv4 address an IPv6 address carries for a
// translator or tunnel to reach. ::1 and :: are not IPv4-compatible addresses.
func embeddedIPv4(ip netip.Addr) (netip.Addr, bool) {
	if !ip.Is6() {
		return netip.Addr{}, false
	}
	b := ip.As16()
	switch {
	case nat64.Contains(ip), compatible.Contains(ip) && ip != netip.IPv6Unspecified() && ip != netip.IPv6Loopback():
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case sixToFour.Contains(ip):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	}
	return netip.Addr{}, false
}

func contains(prefixes []netip.Prefix, ip netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// check refuses address (host:port) unless its host is an IP the guard allows.
func (g *Guard) check(address string) error {
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

// control is a net.Dialer Control hook: it runs after name resolution, just
// before connect, with the address about to be dialled.
func (g *Guard) control(_, address string, _ syscall.RawConn) error {
	return g.check(address)
}

// dialer returns a dial function that refuses what g refuses. With base set
// (tests that map addresses to listeners), an address that is an IP literal is
// checked before base dials it; otherwise the check runs on the resolved IP.
func (g *Guard) dialer(base DialContextFunc) DialContextFunc {
	if base != nil {
		if g == nil {
			return base
		}
		return func(ctx context.Context, network, address string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(address)
			if err == nil {
				if _, perr := netip.ParseAddr(host); perr == nil {
					if err := g.check(address); err != nil {
						return nil, &net.OpError{Op: "dial", Net: network, Err: err}
					}
				}
			}
			return base(ctx, network, address)
		}
	}
	d := &net.Dialer{KeepAlive: -1}
	if g != nil {
		d.Control = g.control
	}
	return d.DialContext
}
