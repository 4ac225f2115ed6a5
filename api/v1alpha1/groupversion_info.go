// Package v1alpha1 contains the API of the circuit.resilience.dev group, version v1alpha1.
// +kubebuilder:object:generate=true
// +groupName=circuit.resilience.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version used to register these objects.
	GroupVersion = schema.GroupVersion{Group: "circuit.resilience.dev", Version: "v1alpha1"}

	// SchemeBuilder collects this group-version's kinds; each types file
	// registers its own in init, as kubebuilder scaffolds them.
	SchemeBuilder = &schemeBuilder{func(s *runtime.Scheme) error {
		metav1.AddToGroupVersion(s, GroupVersion)
		return nil
	}}

	// AddToScheme adds the types in this group-version to the given scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// schemeBuilder offers the Register(objects...) that kubebuilder's scaffold
// calls, on apimachinery alone: controller-runtime's scheme.Builder does the
// same but is deprecated, because API packages should stay cheap to import.
// +kubebuilder:object:generate=false
type schemeBuilder runtime.SchemeBuilder

// Register adds objs to the group-version.
func (b *schemeBuilder) Register(objs ...runtime.Object) {
	*b = append(*b, func(s *runtime.Scheme) error {
		s.AddKnownTypes(GroupVersion, objs...)
		return nil
	})
}

// AddToScheme adds every registered kind to s.
func (b *schemeBuilder) AddToScheme(s *runtime.Scheme) error {
	return (*runtime.SchemeBuilder)(b).AddToScheme(s)
}
