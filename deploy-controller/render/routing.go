package render

import (
	"fmt"
	"maps"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"modelx.io/modelx/deploy-controller/api/v1alpha1"
)

// Routing says what the cluster offers to route spec.expose.
type Routing struct {
	// Istio is true when Istio's networking.istio.io/v1 CRDs are served.
	// Without them nothing is exposed (Exposed: IstioNotInstalled).
	Istio bool
	// SeldonIstio is true when Seldon's own Istio integration is on in
	// this cluster (its operator runs with ISTIO_ENABLED=true): Seldon then
	// makes the VirtualService, and we render none but hand it the hosts
	// and gateway through SeldonIstioAnnotations.
	SeldonIstio bool
	// GatewaySelector selects the ingress gateway pods of the Gateway we
	// create; empty means DefaultGatewaySelector.
	GatewaySelector map[string]string
}

// DefaultGatewaySelector selects the pods of Istio's gateway Helm chart
// installed as release istio-ingress, the name Istio's install guide uses:
// the chart labels them istio=<release without "istio-">, i.e. istio=ingress.
// (istioctl's profiles label theirs istio=ingressgateway.)
func DefaultGatewaySelector() map[string]string {
	return map[string]string{"istio": "ingress"}
}

// The annotations through which Seldon v1.19's Istio integration takes
// routing (operator/controllers/istio.go; read from the SeldonDeployment's
// spec.annotations, else its metadata.annotations, by
// createIstioResources in controllers/seldondeployment_controller.go).
const (
	// AnnotationSeldonIstioHost is the VirtualService's hosts,
	// comma-separated (default "*"): spec.expose.hosts.
	AnnotationSeldonIstioHost = "seldon.io/istio-host"
	// AnnotationSeldonIstioGateway is the VirtualService's one gateway
	// (default the operator's ISTIO_GATEWAY, else seldon-gateway):
	// spec.expose.gateway, or the Gateway we create for createGateway.
	AnnotationSeldonIstioGateway = "seldon.io/istio-gateway"
)

// SeldonPathPrefix is the one prefix Seldon's Istio integration routes for
// md, rewritten to "/": /seldon/NAMESPACE/NAME/.
func SeldonPathPrefix(md *v1alpha1.ModelDeployment) string {
	return "/seldon/" + md.Namespace + "/" + md.Name + "/"
}

// Reasons of the Exposed condition (v1alpha1.ConditionExposed).
const (
	// ReasonRouted: spec.expose is in effect.
	ReasonRouted = "Routed"
	// ReasonNotExposed: spec.expose is not set.
	ReasonNotExposed = "NotExposed"
	// ReasonIstioNotInstalled: Istio's CRDs are not served.
	ReasonIstioNotInstalled = "IstioNotInstalled"
	// ReasonPathPrefixUnsupported: Seldon routes the model and cannot
	// route the prefix asked for.
	ReasonPathPrefixUnsupported = "PathPrefixUnsupported"
	// ReasonInvalidExpose: spec.expose cannot be rendered.
	ReasonInvalidExpose = "InvalidExpose"
	// ReasonKServeIngress: backend kserve, and KServe's ingress
	// configuration exposes the InferenceService.
	ReasonKServeIngress = "KServeIngress"
)

// Exposed is the Exposed condition of md under in: True with ReasonRouted
// when spec.expose is in effect; otherwise False with the reason and a
// message that says what to do. When it is not Routed, nothing is rendered
// for spec.expose: no VirtualService, no Gateway, no Seldon annotations.
func Exposed(md *v1alpha1.ModelDeployment, in Inputs) (status metav1.ConditionStatus, reason, message string) {
	ex := md.Spec.Expose
	kserve := BackendOf(md) == v1alpha1.BackendKServe
	switch {
	case ex == nil && kserve:
		return metav1.ConditionFalse, ReasonNotExposed, "spec.expose is not set: the InferenceService is cluster-local (" + LabelKServeVisibility + ": cluster-local) and answers inside the cluster only"
	case ex == nil:
		return metav1.ConditionFalse, ReasonNotExposed, "spec.expose is not set: the model answers inside the cluster only"
	case kserve:
		if err := validateKServeExpose(ex); err != nil {
			return metav1.ConditionFalse, ReasonInvalidExpose, err.Error()
		}
		return metav1.ConditionTrue, ReasonKServeIngress, fmt.Sprintf("KServe's ingress configuration exposes InferenceService %s (its domain template, ingress class or Gateway API); status.url is its address", md.Name)
	}
	if err := validateExpose(ex); err != nil {
		return metav1.ConditionFalse, ReasonInvalidExpose, err.Error()
	}
	prefix, _ := NormalizePathPrefix(ex.PathPrefix)
	if !in.Routing.Istio {
		return metav1.ConditionFalse, ReasonIstioNotInstalled, "Istio's networking.istio.io/v1 VirtualService is not served in this cluster, so spec.expose routes nothing: install Istio and restart the controller, or remove spec.expose"
	}
	if in.Routing.SeldonIstio && prefix != "/" && prefix != SeldonPathPrefix(md) {
		return metav1.ConditionFalse, ReasonPathPrefixUnsupported, fmt.Sprintf("Seldon's Istio integration routes %s only, not pathPrefix %q: remove pathPrefix (or set it to %s), or run the controller without --seldon-istio so that it routes the prefix itself", SeldonPathPrefix(md), ex.PathPrefix, SeldonPathPrefix(md))
	}
	gateway := gatewayOf(md)
	if gateway == "" {
		gateway = "no gateway (mesh-internal only)"
		if in.Routing.SeldonIstio {
			gateway = "Seldon's default gateway"
		}
	}
	if in.Routing.SeldonIstio {
		return metav1.ConditionTrue, ReasonRouted, fmt.Sprintf("Seldon's VirtualService %s routes %s%s through %s", md.Name, strings.Join(ex.Hosts, ","), SeldonPathPrefix(md), gateway)
	}
	return metav1.ConditionTrue, ReasonRouted, fmt.Sprintf("VirtualService %s routes %s%s through %s", RoutingName(md), strings.Join(ex.Hosts, ","), prefix, gateway)
}

// routed is true when spec.expose is in effect.
func routed(md *v1alpha1.ModelDeployment, in Inputs) bool {
	_, reason, _ := Exposed(md, in)
	return reason == ReasonRouted
}

// gatewayOf is the gateway (NAMESPACE/NAME) md's routes bind to: the one
// it names, or the one we create; "" for none.
func gatewayOf(md *v1alpha1.ModelDeployment) string {
	switch ex := md.Spec.Expose; {
	case ex == nil:
		return ""
	case ex.CreateGateway:
		return md.Namespace + "/" + RoutingName(md)
	default:
		return ex.Gateway
	}
}

// SeldonIstioAnnotations are the SeldonDeployment annotations that hand
// spec.expose to Seldon's Istio integration: hosts and gateway. The path
// is Seldon's own (SeldonPathPrefix). Nil unless SeldonIstio is on and
// spec.expose is Routed.
func SeldonIstioAnnotations(md *v1alpha1.ModelDeployment, in Inputs) map[string]string {
	if !in.Routing.SeldonIstio || !routed(md, in) {
		return nil
	}
	a := map[string]string{AnnotationSeldonIstioHost: strings.Join(md.Spec.Expose.Hosts, ",")}
	if gw := gatewayOf(md); gw != "" {
		a[AnnotationSeldonIstioGateway] = gw
	}
	return a
}

// RenderVirtualService routes md's hosts and path prefix to the Services
// of its versions that take traffic, weighted by their traffic (a version
// without traffic runs without a route); nil when we route nothing: md is
// not exposed or not Routed, or Seldon routes it (SeldonIstio). It is named
// RoutingName(md).
func RenderVirtualService(md *v1alpha1.ModelDeployment, in Inputs) (*VirtualService, error) {
	if err := Validate(md); err != nil {
		return nil, err
	}
	if in.Routing.SeldonIstio || !routed(md, in) {
		return nil, nil
	}
	if err := validateVersions(in.Versions); err != nil {
		return nil, err
	}
	ex := md.Spec.Expose
	prefix, _ := NormalizePathPrefix(ex.PathPrefix) // validated above
	var dests []HTTPRouteDestination
	for _, v := range in.Versions {
		if v.Traffic == 0 {
			continue
		}
		dests = append(dests, HTTPRouteDestination{
			Destination: Destination{Host: PredictorServiceHost(md, PredictorName(v.Digest)), Port: &PortSelector{Number: SeldonHTTPPort}},
			Weight:      v.Traffic,
		})
	}
	route := HTTPRoute{Name: "model", Match: []HTTPMatchRequest{{URI: &StringMatch{Prefix: prefix}}}, Route: dests}
	if prefix != "/" {
		route.Rewrite = &HTTPRewrite{URI: "/"}
	}
	var gateways []string
	if gw := gatewayOf(md); gw != "" {
		gateways = []string{gw}
	}
	return &VirtualService{
		TypeMeta:   metav1.TypeMeta{APIVersion: VirtualServiceGVK.GroupVersion().String(), Kind: VirtualServiceGVK.Kind},
		ObjectMeta: metav1.ObjectMeta{Name: RoutingName(md), Namespace: md.Namespace, Labels: Labels(md)},
		Spec:       VirtualServiceSpec{Hosts: ex.Hosts, Gateways: gateways, HTTP: []HTTPRoute{route}},
	}, nil
}

// RenderGateway is the Gateway md asks to be created (createGateway),
// named RoutingName(md), on the pods in.Routing.GatewaySelector selects:
// port 80 for the hosts, or with spec.expose.tls port 443 with that
// certificate and port 80 redirecting to it. Nil when md does not ask for
// one or is not Routed; Seldon's routes use it too (SeldonIstio).
func RenderGateway(md *v1alpha1.ModelDeployment, in Inputs) (*Gateway, error) {
	if err := Validate(md); err != nil {
		return nil, err
	}
	ex := md.Spec.Expose
	if ex == nil || !ex.CreateGateway || !routed(md, in) {
		return nil, nil
	}
	selector := maps.Clone(in.Routing.GatewaySelector)
	if len(selector) == 0 {
		selector = DefaultGatewaySelector()
	}
	http := GatewayServer{Port: GatewayPort{Number: 80, Name: "http", Protocol: "HTTP"}, Hosts: ex.Hosts}
	servers := []GatewayServer{http}
	if ex.TLS != nil {
		servers[0].TLS = &ServerTLSSettings{HTTPSRedirect: true}
		servers = append(servers, GatewayServer{
			Port:  GatewayPort{Number: 443, Name: "https", Protocol: "HTTPS"},
			Hosts: ex.Hosts,
			TLS:   &ServerTLSSettings{Mode: "SIMPLE", CredentialName: ex.TLS.CredentialName},
		})
	}
	return &Gateway{
		TypeMeta:   metav1.TypeMeta{APIVersion: GatewayGVK.GroupVersion().String(), Kind: GatewayGVK.Kind},
		ObjectMeta: metav1.ObjectMeta{Name: RoutingName(md), Namespace: md.Namespace, Labels: Labels(md)},
		Spec:       GatewaySpec{Selector: selector, Servers: servers},
	}, nil
}

// URL is where md answers: when spec.expose is Routed, its first host
// without a wildcard and its path (Seldon's /seldon/NAMESPACE/NAME/ under
// SeldonIstio), over https with spec.expose.tls; otherwise the in-cluster
// Service of the version with the most traffic (the first of equals), or ""
// without versions. For backend kserve it is the predictor's in-cluster
// Service; the controller reports KServe's own status.url once it has one.
func URL(md *v1alpha1.ModelDeployment, in Inputs) string {
	if BackendOf(md) == v1alpha1.BackendKServe {
		return fmt.Sprintf("http://%s.%s.svc.cluster.local/", KServePredictorServiceName(md), md.Namespace)
	}
	if routed(md, in) {
		ex := md.Spec.Expose
		scheme := "http"
		if ex.TLS != nil {
			scheme = "https"
		}
		path, _ := NormalizePathPrefix(ex.PathPrefix)
		if in.Routing.SeldonIstio {
			path = SeldonPathPrefix(md)
		}
		for _, h := range ex.Hosts {
			if !strings.Contains(h, "*") {
				return scheme + "://" + h + path
			}
		}
	}
	versions := append([]Version(nil), in.Versions...)
	if len(versions) == 0 {
		return ""
	}
	sort.SliceStable(versions, func(i, j int) bool { return versions[i].Traffic > versions[j].Traffic })
	return fmt.Sprintf("http://%s:%d/", PredictorServiceHost(md, PredictorName(versions[0].Digest)), SeldonHTTPPort)
}
