// Package probe sends health probes: an HTTP(S) GET, a TCP connect or a call of
// the gRPC health service, each with its own deadline, through a dialer that refuses addresses the operator must
// not reach. Results carry a short reason and never a body or a header.
package probe

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Scheme is how a target is probed.
type Scheme string

// The schemes a target may use.
const (
	HTTP  Scheme = "http"
	HTTPS Scheme = "https"
	TCP   Scheme = "tcp"
	GRPC  Scheme = "grpc"
	GRPCS Scheme = "grpcs"
)

// IsGRPC reports whether s is probed with the gRPC health service.
func (s Scheme) IsGRPC() bool { return s == GRPC || s == GRPCS }

// StatusRange is an inclusive range of HTTP status codes.
type StatusRange struct{ Low, High int }

// DefaultStatuses is what counts as success when a breaker names none.
var DefaultStatuses = []StatusRange{{200, 399}}

// Target is one thing to probe.
type Target struct {
	Scheme Scheme
	// URL is the full URL for HTTP(S) targets.
	URL string
	// Address is host:port, for every scheme.
	Address string
	// Timeout is the deadline of one attempt.
	Timeout time.Duration
	// Expected lists the statuses that count as success (HTTP(S) only).
	Expected []StatusRange

	// Headers are set on each HTTP request.
	Headers []Header
	// TLS, when set, replaces the default certificate verification and may add
	// a client certificate (HTTPS and GRPCS only).
	TLS *TLS

	// GRPC says what a gRPC target's health calls ask (GRPC and GRPCS only).
	GRPC *GRPCSettings

	// Allowed, when Restricted, is where the target's connections may go (a
	// namespace's ranges, set by the cluster admin), on top of the guard.
	Allowed    []netip.Prefix
	Restricted bool

	// Round, when set, makes this target a probe round over the endpoints of a
	// Service: each endpoint is probed (Scheme, Path, Timeout and Expected apply to
	// each) and the round fails when at least FailurePercent of them fail. URL and
	// Address are then unused.
	Round *Round
}

// Header is an HTTP request header. Its value may be a credential: it is never
// logged nor returned.
type Header struct{ Name, Value string }

// GRPCSettings tunes the health calls of a gRPC target.
type GRPCSettings struct {
	// Service is the name sent in each Health/Check or Health/Watch request;
	// empty asks about the whole server.
	Service string
	// Watch holds a Health/Watch stream (see Runner) instead of calling Check.
	Watch bool
}

// TLS says how an HTTPS or GRPCS target's certificate is verified, and which
// certificate the probe presents.
type TLS struct {
	// CAPEM holds PEM CA certificates; empty means the system roots.
	CAPEM []byte
	// ServerName is the name the certificate must carry; empty means the URL's host.
	ServerName string
	// InsecureSkipVerify turns verification off.
	InsecureSkipVerify bool
	// ClientCertPEM and ClientKeyPEM, when set, are the certificate chain and
	// key presented to targets that ask for one (mutual TLS). They are
	// credentials: never logged nor returned.
	ClientCertPEM, ClientKeyPEM []byte
}

// key identifies the TLS settings, so that targets that share them share
// connections, and a rotated client certificate gets new ones.
func (t *TLS) key() string {
	client := sha256.Sum256(append(append([]byte{}, t.ClientCertPEM...), t.ClientKeyPEM...))
	return fmt.Sprintf("%x|%s|%t|%x", sha256.Sum256(t.CAPEM), t.ServerName, t.InsecureSkipVerify, client)
}

// Round is a probe round over the endpoints of a Service.
type Round struct {
	// Endpoints are probed concurrently. None is a failed round.
	Endpoints []Endpoint
	// Path is requested from each endpoint (HTTP(S) only).
	Path string
	// ServerName is the TLS server name and Host header (HTTPS only), such as
	// name.namespace.svc.
	ServerName string
	// FailurePercent: the round fails when at least this percentage of endpoints fail.
	FailurePercent int
	// Unresolved, when not empty, fails the round at once without dialling: the
	// Service or its port could not be resolved. It is the reason reported.
	Unresolved string
}

// Endpoint is one address of a Service.
type Endpoint struct {
	Address string
	Port    int32
}

// ParseURL turns a breaker's target URL into a Target with the given deadline.
func ParseURL(raw string, timeout time.Duration) (Target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Target{}, errors.New("url is not a valid URL")
	}
	t := Target{Scheme: Scheme(strings.ToLower(u.Scheme)), Timeout: timeout}
	if u.Hostname() == "" {
		return Target{}, errors.New("url must name a host")
	}
	// url.Parse lets through hosts such as "[fe80::1%25x]0]", whose name it
	// then reads differently from the way the host is written.
	if !wellFormedHost(u) {
		return Target{}, errors.New("url host must be a host name or address and an optional port")
	}
	port := u.Port()
	switch t.Scheme {
	case HTTP, HTTPS:
		if port == "" {
			port = map[Scheme]string{HTTP: "80", HTTPS: "443"}[t.Scheme]
		}
		t.URL = u.String()
		// The request is built from this string; one that does not parse back
		// (odd escapes in an IPv6 zone, say) would fail every probe obscurely.
		if _, err := url.Parse(t.URL); err != nil {
			return Target{}, errors.New("url is not a valid URL")
		}
	case TCP:
		if port == "" {
			return Target{}, errors.New("a tcp url must name a port")
		}
	case GRPC, GRPCS:
		if port == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return Target{}, errors.New("a grpc or grpcs url must name a port and nothing after it")
		}
		t.GRPC = &GRPCSettings{}
	default:
		return Target{}, fmt.Errorf("url scheme %q is not http, https, tcp, grpc or grpcs", u.Scheme)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return Target{}, fmt.Errorf("url port %q is not a port number from 1 to 65535", port)
	}
	t.Address = net.JoinHostPort(u.Hostname(), port)
	return t, nil
}

// wellFormedHost reports whether u's host part is a name or an address (an
// IPv6 one in brackets) and an optional port, written the way url.URL reads it.
func wellFormedHost(u *url.URL) bool {
	host := u.Hostname()
	if strings.ContainsAny(host, "[]") {
		return false
	}
	want := host
	if strings.Contains(host, ":") {
		if ip, err := netip.ParseAddr(host); err != nil || !ip.Is6() {
			return false
		}
		want = "[" + host + "]"
	}
	if port := u.Port(); port != "" {
		want += ":" + port
	}
	return strings.TrimSuffix(u.Host, ":") == want
}

// ParseStatusRanges parses codes ("204") and inclusive ranges ("200-399").
// An empty list yields DefaultStatuses.
func ParseStatusRanges(specs []string) ([]StatusRange, error) {
	if len(specs) == 0 {
		return slices.Clone(DefaultStatuses), nil
	}
	out := make([]StatusRange, 0, len(specs))
	for _, s := range specs {
		lo, hi, isRange := strings.Cut(s, "-")
		low, err := parseStatus(lo)
		if err != nil {
			return nil, fmt.Errorf("status range %q: %w", s, err)
		}
		high := low
		if isRange {
			if high, err = parseStatus(hi); err != nil {
				return nil, fmt.Errorf("status range %q: %w", s, err)
			}
		}
		if high < low {
			return nil, fmt.Errorf("status range %q runs from high to low", s)
		}
		out = append(out, StatusRange{Low: low, High: high})
	}
	return out, nil
}

func parseStatus(s string) (int, error) {
	if len(s) != 3 {
		return 0, errors.New("a status is three digits")
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 100 || n > 599 {
		return 0, errors.New("a status is a number from 100 to 599")
	}
	return n, nil
}

// Accepts reports whether code is in one of the ranges.
func Accepts(ranges []StatusRange, code int) bool {
	for _, r := range ranges {
		if code >= r.Low && code <= r.High {
			return true
		}
	}
	return false
}

// ValidClientCertificate reports whether certPEM and keyPEM hold a certificate
// and the private key that belongs to it.
func ValidClientCertificate(certPEM, keyPEM []byte) bool {
	_, err := tls.X509KeyPair(certPEM, keyPEM)
	return err == nil
}

// ValidCAPEM reports whether pem holds at least one PEM certificate.
func ValidCAPEM(pem []byte) bool {
	return x509.NewCertPool().AppendCertsFromPEM(pem)
}
