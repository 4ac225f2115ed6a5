// Package v1alpha1 contains the API of the circuit.resilience.dev group, version v1alpha1.
// +kubebuilder:object:generate=true
// +groupName=circuit.resilience.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version used to register these objects.
	GroupVersion = schema.GroupVersion{Group: "circuit.resilience.dev", Version: "v1alpha1"}

	// SchemeBuilder registers this group-version's types, as kubebuilder scaffolds it
	// (each types file registers its kinds in init).
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the types in this group-version to the given scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
