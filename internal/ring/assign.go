// Package ring is the membership of a sharded manager and the assignment of
// breakers to its members. Membership is one coordination.k8s.io Lease per
// member; ownership is a range of the 64-bit FNV-1a hash of a breaker's UID,
// the range KEP-5866's shardRange(object.metadata.uid, start, end) selects, so
// that the API server itself can apply it. There is no consensus of our own:
// members that read the same Leases compute the same ranges, and optimistic
// concurrency on the breaker settles the moments when they do not.
package ring

import (
	"fmt"
	"math/bits"
	"slices"

	"k8s.io/apimachinery/pkg/sharding"
)

// UIDField is the field the ranges hash, in KEP-5866's syntax.
const UIDField = "object.metadata.uid"

// fullEnd is 2^64, the exclusive end of the last range, as the API server spells it.
const fullEnd = "0x10000000000000000"

// Range is one member's share of [0, 2^64): Start inclusive, End exclusive,
// as 0x-prefixed 16-digit lowercase hex (End of the last range is 2^64).
type Range struct {
	Member string
	Start  string
	End    string
}

// Ranges splits [0, 2^64) into equal contiguous ranges, one per member, in
// the order of the members sorted by identity. Duplicates count once.
func Ranges(members []string) []Range {
	ids := slices.Clone(members)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	n := uint64(len(ids))
	out := make([]Range, 0, n)
	for i, id := range ids {
		end := fullEnd
		if uint64(i)+1 < n {
			end = hex(boundary(uint64(i)+1, n))
		}
		out = append(out, Range{Member: id, Start: hex(boundary(uint64(i), n)), End: end})
	}
	return out
}

// boundary is floor(i * 2^64 / n), for i < n.
func boundary(i, n uint64) uint64 {
	q, _ := bits.Div64(i, 0, n)
	return q
}

func hex(v uint64) string { return fmt.Sprintf("0x%016x", v) }

// Selector is the shard selector of member's range among members; ok is false
// when member is not one of them (it owns nothing).
func Selector(members []string, member string) (sel sharding.Selector, ok bool) {
	for _, r := range Ranges(members) {
		if r.Member == member {
			return sharding.NewSelector(sharding.ShardRangeRequirement{Key: UIDField, Start: r.Start, End: r.End}), true
		}
	}
	return nil, false
}
