package ring

import (
	"fmt"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/sharding"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"slices"
)

func TestRangesSplitTheHashSpaceEquallyInIdentityOrder(t *testing.T) {
	cases := []struct {
		name    string
		members []string
		want    []Range
	}{
		{"none", nil, []Range{}},
		{"one owns everything", []string{"a"}, []Range{{"a", "0x0000000000000000", fullEnd}}},
		{"two halves, sorted by identity", []string{"b", "a"}, []Range{
			{"a", "0x0000000000000000", "0x8000000000000000"},
			{"b", "0x8000000000000000", fullEnd}}},
		{"three thirds", []string{"m-2", "m-0", "m-1"}, []Range{
			{"m-0", "0x0000000000000000", "0x5555555555555555"},
			{"m-1", "0x5555555555555555", "0xaaaaaaaaaaaaaaaa"},
			{"m-2", "0xaaaaaaaaaaaaaaaa", fullEnd}}},
		{"four quarters, a duplicate counted once", []string{"d", "c", "b", "a", "a"}, []Range{
			{"a", "0x0000000000000000", "0x4000000000000000"},
			{"b", "0x4000000000000000", "0x8000000000000000"},
			{"c", "0x8000000000000000", "0xc000000000000000"},
			{"d", "0xc000000000000000", fullEnd}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Ranges(tc.members); !slices.Equal(got, tc.want) {
				t.Errorf("Ranges(%v) = %v, want %v", tc.members, got, tc.want)
			}
		})
	}
}

func TestEveryUIDHasExactlyOneOwner(t *testing.T) {
	for n := 1; n <= 7; n++ {
		members := make([]string, n)
		for i := range members {
			members[i] = fmt.Sprintf("member-%d", i)
		}
		for u := range 500 {
			obj := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{UID: types.UID(fmt.Sprintf("uid-%d-%d", n, u))}}
			owners := 0
			for _, m := range members {
				sel, ok := Selector(members, m)
				if !ok {
					t.Fatalf("Selector(%v, %s) not ok", members, m)
				}
				if match, err := sel.Matches(obj); err != nil {
					t.Fatal(err)
				} else if match {
					owners++
				}
			}
			if owners != 1 {
				t.Fatalf("%d members: UID %s has %d owners, want 1", n, obj.UID, owners)
			}
		}
	}
}

func TestSelectorIsTheAPIServersSyntaxAndOnlyForMembers(t *testing.T) {
	sel, ok := Selector([]string{"a", "b"}, "b")
	if !ok {
		t.Fatal("b is a member")
	}
	if want := "shardRange(object.metadata.uid, '0x8000000000000000', '0x10000000000000000')"; sel.String() != want {
		t.Errorf("String() = %q, want %q", sel.String(), want)
	}
	if _, ok := Selector([]string{"a", "b"}, "c"); ok {
		t.Error("c is not a member, yet has a range")
	}
	// The hash is the API server's: a UID whose FNV-1a-64 is below 2^63 is a's.
	uid := types.UID("0f8fad5b-d9cb-469f-a165-70867728950e")
	owner := "a"
	if sharding.HashField(string(uid)) >= "8" {
		owner = "b"
	}
	obj := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{UID: uid}}
	for _, m := range []string{"a", "b"} {
		sel, _ := Selector([]string{"a", "b"}, m)
		if got, _ := sel.Matches(obj); got != (m == owner) {
			t.Errorf("member %s matches %s: %v, want %v", m, uid, got, m == owner)
		}
	}
}

func TestLiveMembersAreTheUnexpiredLeases(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	lease := func(id string, renewedAgo time.Duration, seconds int32) coordinationv1.Lease {
		renew := metav1.NewMicroTime(now.Add(-renewedAgo))
		return coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{
			HolderIdentity: ptr.To(id), RenewTime: &renew, LeaseDurationSeconds: ptr.To(seconds)}}
	}
	leases := []coordinationv1.Lease{
		lease("c", time.Second, 10),
		lease("a", 9*time.Second, 10),
		lease("expired", 10*time.Second, 10),
		lease("long-expired", time.Hour, 10),
		{Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("never-renewed"), LeaseDurationSeconds: ptr.To[int32](10)}},
	}
	if got, want := LiveMembers(leases, now), []string{"a", "c"}; !slices.Equal(got, want) {
		t.Errorf("LiveMembers = %v, want %v", got, want)
	}
}
