package probe

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestParseURL(t *testing.T) {
	const timeout = 2 * time.Second
	tests := []struct {
		name    string
		raw     string
		want    Target
		wantErr string
	}{
		{
			name: "http with a port keeps it",
			raw:  "http://svc.ns.svc:8080/healthz?deep=1",
			want: Target{Scheme: HTTP, URL: "http://svc.ns.svc:8080/healthz?deep=1", Address: "svc.ns.svc:8080", Timeout: timeout},
		},
		{
			name: "http without a port defaults to 80",
			raw:  "http://svc/healthz",
			want: Target{Scheme: HTTP, URL: "http://svc/healthz", Address: "svc:80", Timeout: timeout},
		},
		{
			name: "https without a port defaults to 443",
			raw:  "https://svc.example/",
			want: Target{Scheme: HTTPS, URL: "https://svc.example/", Address: "svc.example:443", Timeout: timeout},
		},
		{
			name: "https with a port keeps it",
			raw:  "https://svc.example:8443",
			want: Target{Scheme: HTTPS, URL: "https://svc.example:8443", Address: "svc.example:8443", Timeout: timeout},
		},
		{
			name: "upper-case scheme is accepted as lower case",
			raw:  "HTTP://svc/",
			want: Target{Scheme: HTTP, URL: "http://svc/", Address: "svc:80", Timeout: timeout},
		},
		{
			name: "tcp with a port has an address and no URL",
			raw:  "tcp://db.ns:5432",
			want: Target{Scheme: TCP, Address: "db.ns:5432", Timeout: timeout},
		},
		{
			name: "tcp ignores a path",
			raw:  "tcp://db:5432/ignored",
			want: Target{Scheme: TCP, Address: "db:5432", Timeout: timeout},
		},
		{
			name: "IPv6 literal is bracketed in the address",
			raw:  "http://[::1]:9000/x",
			want: Target{Scheme: HTTP, URL: "http://[::1]:9000/x", Address: "[::1]:9000", Timeout: timeout},
		},
		{
			name: "IPv6 literal with a zone keeps the zone and gets the default port",
			raw:  "https://[fe80::1%25eth0]/",
			want: Target{Scheme: HTTPS, URL: "https://[fe80::1%25eth0]/", Address: "[fe80::1%eth0]:443", Timeout: timeout},
		},
		{
			name: "IPv4 literal with the highest port",
			raw:  "tcp://10.0.0.1:65535",
			want: Target{Scheme: TCP, Address: "10.0.0.1:65535", Timeout: timeout},
		},
		{name: "http without a host is refused", raw: "http:///healthz", wantErr: "url must name a host"},
		{name: "http with only a port is refused", raw: "http://:8080/", wantErr: "url must name a host"},
		{name: "empty url is refused", raw: "", wantErr: "url must name a host"},
		{name: "relative url is refused", raw: "/healthz", wantErr: "url must name a host"},
		{name: "host and port without a scheme are refused", raw: "svc:8080", wantErr: "url must name a host"},
		{name: "tcp without a port is refused", raw: "tcp://db", wantErr: "a tcp url must name a port"},
		{name: "tcp with an empty port is refused", raw: "tcp://db:", wantErr: "a tcp url must name a port"},
		{name: "a bracketed host with text after the bracket is refused", raw: "https://[fe80::1%25et]0t]", wantErr: "url host must be a host name or address and an optional port"},
		{name: "file scheme without a host is refused", raw: "file:///etc/passwd", wantErr: "url must name a host"},
		{name: "file scheme with a host is refused", raw: "file://host/etc/passwd", wantErr: `url scheme "file" is not http, https, tcp, grpc or grpcs`},
		{name: "ftp scheme is refused", raw: "ftp://files.example/pub", wantErr: `url scheme "ftp" is not http, https, tcp, grpc or grpcs`},
		{name: "udp scheme is refused", raw: "udp://dns:53", wantErr: `url scheme "udp" is not http, https, tcp, grpc or grpcs`},
		{name: "port above 65535 is refused", raw: "http://svc:65536/", wantErr: `url port "65536" is not a port number from 1 to 65535`},
		{name: "tcp port above 65535 is refused", raw: "tcp://db:99999", wantErr: `url port "99999" is not a port number from 1 to 65535`},
		{name: "non-numeric port is refused", raw: "http://svc:http/", wantErr: "url is not a valid URL"},
		{name: "negative port is refused", raw: "tcp://db:-1", wantErr: "url is not a valid URL"},
		{name: "unclosed IPv6 bracket is refused", raw: "http://[::1:80/", wantErr: "url is not a valid URL"},
		{name: "control character is refused", raw: "http://svc/\x7f", wantErr: "url is not a valid URL"},
		{name: "missing scheme name is refused", raw: "://svc", wantErr: "url is not a valid URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			got, err := ParseURL(tt.raw, timeout)
			if tt.wantErr != "" {
				g.Expect(err).To(MatchError(tt.wantErr))
				g.Expect(got).To(BeZero())
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(Equal(tt.want))
		})
	}
}

func TestParseStatusRanges(t *testing.T) {
	tests := []struct {
		name    string
		specs   []string
		want    []StatusRange
		wantErr string
	}{
		{name: "nil yields the default 200-399", specs: nil, want: []StatusRange{{200, 399}}},
		{name: "empty yields the default 200-399", specs: []string{}, want: []StatusRange{{200, 399}}},
		{name: "single code is a range of one", specs: []string{"204"}, want: []StatusRange{{204, 204}}},
		{name: "inclusive range", specs: []string{"200-299"}, want: []StatusRange{{200, 299}}},
		{name: "range of one written as a range", specs: []string{"418-418"}, want: []StatusRange{{418, 418}}},
		{name: "widest range", specs: []string{"100-599"}, want: []StatusRange{{100, 599}}},
		{
			name:  "codes and ranges keep their order",
			specs: []string{"200-299", "404", "301-302"},
			want:  []StatusRange{{200, 299}, {404, 404}, {301, 302}},
		},
		{name: "range from high to low is refused", specs: []string{"399-200"}, wantErr: `status range "399-200" runs from high to low`},
		{name: "one bad entry refuses the list", specs: []string{"200", "abcd"}, wantErr: `status range "abcd": a status is three digits`},
		{name: "empty entry is refused", specs: []string{""}, wantErr: "a status is three digits"},
		{name: "two digits are refused", specs: []string{"20"}, wantErr: "a status is three digits"},
		{name: "four digits are refused", specs: []string{"2000"}, wantErr: "a status is three digits"},
		{name: "code below 100 is refused", specs: []string{"099"}, wantErr: "a status is a number from 100 to 599"},
		{name: "code above 599 is refused", specs: []string{"600"}, wantErr: "a status is a number from 100 to 599"},
		{name: "signed code is refused", specs: []string{"+20"}, wantErr: "a status is a number from 100 to 599"},
		{name: "letters of the right length are refused", specs: []string{"2xx"}, wantErr: "a status is a number from 100 to 599"},
		{name: "range without a high end is refused", specs: []string{"200-"}, wantErr: "a status is three digits"},
		{name: "range without a low end is refused", specs: []string{"-200"}, wantErr: "a status is three digits"},
		{name: "range with three parts is refused", specs: []string{"200-300-400"}, wantErr: "a status is three digits"},
		{name: "range with spaces is refused", specs: []string{"200 - 299"}, wantErr: "a status is three digits"},
		{name: "range with a high end above 599 is refused", specs: []string{"500-600"}, wantErr: "a status is a number from 100 to 599"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			got, err := ParseStatusRanges(tt.specs)
			if tt.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
				g.Expect(got).To(BeNil())
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(Equal(tt.want))
		})
	}
}

func TestAccepts(t *testing.T) {
	mixed := []StatusRange{{200, 204}, {301, 302}, {418, 418}}
	tests := []struct {
		name   string
		ranges []StatusRange
		code   int
		want   bool
	}{
		{name: "default accepts 200", ranges: DefaultStatuses, code: 200, want: true},
		{name: "default accepts a redirect", ranges: DefaultStatuses, code: 302, want: true},
		{name: "default accepts its upper bound 399", ranges: DefaultStatuses, code: 399, want: true},
		{name: "default refuses 199", ranges: DefaultStatuses, code: 199},
		{name: "default refuses 400", ranges: DefaultStatuses, code: 400},
		{name: "default refuses 503", ranges: DefaultStatuses, code: 503},
		{name: "a single code accepts itself", ranges: mixed, code: 418, want: true},
		{name: "a single code refuses its neighbour", ranges: mixed, code: 417},
		{name: "a later range is consulted", ranges: mixed, code: 301, want: true},
		{name: "a gap between ranges is refused", ranges: mixed, code: 250},
		{name: "no ranges accept nothing", ranges: nil, code: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			g.Expect(Accepts(tt.ranges, tt.code)).To(Equal(tt.want))
		})
	}
}
