package controller

import "modelx.io/modelx/deploy-controller/render"

// Inputs are the render inputs of versions under this controller's
// configuration: the initializer image and options, and the cluster's
// routing (Istio, Seldon's Istio integration, the gateway selector).
func (r *Reconciler) Inputs(versions []render.Version) render.Inputs {
	return render.Inputs{
		Versions:         versions,
		InitializerImage: r.InitializerImage,
		Initializer:      r.Initializer,
		Routing:          r.Routing,
	}
}
