package probe

import (
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzParseURL checks that ParseURL never panics and that whatever it accepts
// can be dialled: a known scheme and a host:port address with a numeric port.
func FuzzParseURL(f *testing.F) {
	for _, seed := range []string{
		"http://svc.ns.svc:8080/healthz",
		"https://svc/",
		"tcp://db:5432",
		"tcp://db",
		"grpc://svc:9090",
		"grpcs://svc:443/",
		"grpc://svc:9090/x",
		"http://[::1]:9000/x",
		"https://[fe80::1%25eth0]/",
		"file:///etc/passwd",
		"ftp://files.example/",
		"http://svc:65536/",
		"http://user:pass@svc:80/p?q=1#frag",
		"",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		const timeout = 3 * time.Second
		tg, err := ParseURL(raw, timeout)
		if err != nil {
			if tg.Scheme != "" || tg.URL != "" || tg.Address != "" || tg.Timeout != 0 {
				t.Fatalf("ParseURL(%q) failed with %v but returned %+v", raw, err, tg)
			}
			return
		}
		if tg.Timeout != timeout || tg.Expected != nil {
			t.Fatalf("ParseURL(%q) = %+v: timeout not kept or statuses set", raw, tg)
		}
		// Not net.SplitHostPort: url.Parse lets a host such as "]" through, which
		// ParseURL passes on and the dialer later refuses.
		i := strings.LastIndexByte(tg.Address, ':')
		if i <= 0 {
			t.Fatalf("ParseURL(%q) address %q is not host:port", raw, tg.Address)
		}
		host, port := tg.Address[:i], tg.Address[i+1:]
		if h, p, err := net.SplitHostPort(tg.Address); err == nil {
			host, port = h, p
		}
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			t.Fatalf("ParseURL(%q) address %q has a port that is not a number: %v", raw, tg.Address, err)
		}
		switch tg.Scheme {
		case HTTP, HTTPS:
			u, err := url.Parse(tg.URL)
			if err != nil {
				t.Fatalf("ParseURL(%q) URL %q does not parse: %v", raw, tg.URL, err)
			}
			if Scheme(u.Scheme) != tg.Scheme || u.Hostname() != host {
				t.Fatalf("ParseURL(%q) URL %q does not match scheme %s and host %q", raw, tg.URL, tg.Scheme, host)
			}
		case TCP:
			if tg.URL != "" {
				t.Fatalf("ParseURL(%q) gave a tcp target a URL %q", raw, tg.URL)
			}
		case GRPC, GRPCS:
			if tg.URL != "" || tg.GRPC == nil {
				t.Fatalf("ParseURL(%q) gave a gRPC target a URL %q or no gRPC settings", raw, tg.URL)
			}
		default:
			t.Fatalf("ParseURL(%q) accepted scheme %q", raw, tg.Scheme)
		}
	})
}

// statusPattern is the CRD's pattern for one expected status.
var statusPattern = regexp.MustCompile(`^[1-5][0-9][0-9](-[1-5][0-9][0-9])?$`)

// FuzzParseStatusRanges checks that ParseStatusRanges never panics, that it
// accepts exactly what the CRD admits (its pattern and its low-to-high rule),
// and that every range it returns lies within 100-599. The input is a
// comma-separated list.
func FuzzParseStatusRanges(f *testing.F) {
	for _, seed := range []string{"", "204", "200-399", "200-299,404", "399-200", "099", "600", "2000", "200-", "-200", "+20", "2xx", "200-300-400"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, list string) {
		var specs []string
		if list != "" {
			specs = strings.Split(list, ",")
		}
		got, err := ParseStatusRanges(specs)

		admitted := true
		for _, s := range specs {
			admitted = admitted && admittedByCRD(s)
		}
		if (err == nil) != admitted {
			t.Fatalf("ParseStatusRanges(%q) error %v, but the CRD admits it: %v", specs, err, admitted)
		}
		if err != nil {
			return
		}
		if len(specs) == 0 {
			if len(got) != 1 || got[0] != (StatusRange{200, 399}) {
				t.Fatalf("ParseStatusRanges of no statuses = %v, want the default 200-399", got)
			}
		} else if len(got) != len(specs) {
			t.Fatalf("ParseStatusRanges(%q) = %v: one range per status expected", specs, got)
		}
		for _, r := range got {
			if r.Low < 100 || r.Low > r.High || r.High > 599 {
				t.Fatalf("ParseStatusRanges(%q) gave range %+v outside 100 <= low <= high <= 599", specs, r)
			}
			if !Accepts(got, r.Low) || !Accepts(got, r.High) {
				t.Fatalf("ranges %v do not accept their own bounds", got)
			}
		}
		if Accepts(got, 99) || Accepts(got, 600) {
			t.Fatalf("ranges %v accept a status outside 100-599", got)
		}
	})
}

// admittedByCRD reports whether the API server would admit s as an expected
// status: the pattern, and the CEL rule that a range runs from low to high.
func admittedByCRD(s string) bool {
	if !statusPattern.MatchString(s) {
		return false
	}
	return len(s) < 7 || s[:3] <= s[4:7]
}
