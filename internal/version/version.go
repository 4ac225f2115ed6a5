// Package version holds the operator's version, set at build time with
// -ldflags "-X github.com/resilience-dev/breaker-operator/internal/version.Version=v1.2.3".
package version

// Version is the operator's version.
var Version = "v0.1.0-dev"

// UserAgent is the User-Agent header every probe sends.
func UserAgent() string { return "breaker-operator/" + Version }
