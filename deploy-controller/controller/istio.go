package controller

import (
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"modelx.io/modelx/deploy-controller/render"
)

// IstioInstalled is true when the cluster serves the Istio kinds the
// controller renders, networking.istio.io/v1 VirtualService and Gateway.
// Without them the controller neither watches nor renders Istio objects,
// and reports spec.expose as IstioNotInstalled. It is checked once, at
// start: restart the controller after installing Istio.
func IstioInstalled(mapper meta.RESTMapper) bool {
	for _, gvk := range []schema.GroupVersionKind{render.VirtualServiceGVK, render.GatewayGVK} {
		if _, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
			return false
		}
	}
	return true
}
