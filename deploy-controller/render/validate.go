package render

import (
	"fmt"
	"path"
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"modelx.io/modelx/deploy-controller/api/v1alpha1"
)

// Validate reports the first thing in md's spec that rendering cannot
// honour, as an error a person can act on; nil when md renders. The CRD
// schema checks most of the spec; this covers what it cannot, and what
// objects stored before a schema change may still hold.
func Validate(md *v1alpha1.ModelDeployment) error {
	// Seldon names Services and containers after the SeldonDeployment and
	// labels carry the name: a DNS-1035 label of 63 characters fits all.
	if errs := validation.IsDNS1035Label(md.Name); len(errs) > 0 {
		return fmt.Errorf("metadata.name %q: Seldon names Services after it, so it must be a DNS-1035 label: %s", md.Name, strings.Join(errs, "; "))
	}
	if msg := ProtocolMessage(md.Spec.Server.Protocol); msg != "" {
		return fmt.Errorf("%s", msg)
	}
	if err := validateMount(md); err != nil {
		return err
	}
	switch b := BackendOf(md); b {
	case v1alpha1.BackendKServe:
		return validateKServe(md)
	case v1alpha1.BackendSeldon:
	default:
		return fmt.Errorf("spec.backend %q is not a backend: use seldon or kserve", b)
	}
	if md.Spec.Server.Runtime != "" || md.Spec.Server.ModelFormat != nil {
		return fmt.Errorf("spec.server.runtime and spec.server.modelFormat are for backend kserve: remove them, or set backend: kserve")
	}
	if err := validateServerEnv(md.Spec.Server); err != nil {
		return err
	}
	if ex := md.Spec.Expose; ex != nil && len(ex.Hosts) == 0 {
		return fmt.Errorf("spec.expose names no host: with backend seldon, give at least one in spec.expose.hosts")
	}
	return validateExpose(md.Spec.Expose)
}

// BackendOf is md's backend; an object stored before spec.backend existed
// (empty) is seldon.
func BackendOf(md *v1alpha1.ModelDeployment) v1alpha1.Backend {
	if md.Spec.Backend == "" {
		return v1alpha1.BackendSeldon
	}
	return md.Spec.Backend
}

// validateExpose checks what the schema cannot of spec.expose, if set.
func validateExpose(ex *v1alpha1.Expose) error {
	if ex == nil {
		return nil
	}
	if _, err := NormalizePathPrefix(ex.PathPrefix); err != nil {
		return err
	}
	if ex.TLS != nil && (!ex.CreateGateway || ex.TLS.CredentialName == "") {
		return fmt.Errorf("spec.expose.tls needs createGateway and a credentialName: an existing gateway brings its own TLS")
	}
	return nil
}

// ProtocolMessage says why protocol cannot be served, or "" when it can
// (v2, or unset, which defaults to v2). Seldon v1 gives no image to the
// seldon and tensorflow protocols for the servers we render: their pods
// would start with an empty image.
func ProtocolMessage(protocol string) string {
	if protocol == "" || protocol == ProtocolV2 {
		return ""
	}
	return fmt.Sprintf("spec.server.protocol %q is not served: MLServer and Triton run with the v2 (Open Inference) protocol only; set protocol: v2 or remove it", protocol)
}

var digestPattern = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)

// validateVersions checks what RenderSeldonDeployment serves: at least one
// version, valid and distinct digests (distinct predictor names too), each
// share within 0..100 and the shares summing to 100, as Seldon's webhook
// requires of several predictors.
func validateVersions(versions []Version) error {
	if len(versions) == 0 {
		return fmt.Errorf("no version to serve: the model reference has not resolved to a digest")
	}
	var sum int32
	names := map[string]string{}
	for _, v := range versions {
		if !digestPattern.MatchString(v.Digest) {
			return fmt.Errorf("version digest %q is not sha256:<64 hex digits>", v.Digest)
		}
		if other, ok := names[PredictorName(v.Digest)]; ok {
			return fmt.Errorf("versions %s and %s share the predictor name %s", other, v.Digest, PredictorName(v.Digest))
		}
		names[PredictorName(v.Digest)] = v.Digest
		if v.Traffic < 0 || v.Traffic > 100 {
			return fmt.Errorf("version %s has traffic %d%%, outside 0..100", v.Digest, v.Traffic)
		}
		sum += v.Traffic
	}
	if sum != 100 {
		return fmt.Errorf("the versions' traffic sums to %d%%, not 100%%", sum)
	}
	return nil
}

// ModelSettingsFile is the file in which MLServer looks for a model's
// settings.
const ModelSettingsFile = "model-settings.json"

// ImplementationIgnored is true when spec.server.implementation (impl) may
// not take effect: the model version's files ship a model-settings.json,
// and MLServer takes a model's settings from that file over the
// MLSERVER_MODEL_* variables, the implementation among them. Only a file
// without an "implementation" key leaves impl in effect.
func ImplementationIgnored(files []string, impl string) bool {
	if impl == "" {
		return false
	}
	for _, f := range files {
		if path.Base(f) == ModelSettingsFile {
			return true
		}
	}
	return false
}

// NormalizePathPrefix is spec.expose.pathPrefix as routed: "" is "/", and a
// prefix always ends in "/", so that "/bert" matches /bert/v2/... and is
// rewritten to /v2/..., never //v2/.... It refuses a prefix that does not
// start with "/", or holds a query, fragment, blank, "//", "." or ".."
// segment.
func NormalizePathPrefix(prefix string) (string, error) {
	if prefix == "" {
		return "/", nil
	}
	bad := func(why string) error {
		return fmt.Errorf("spec.expose.pathPrefix %q %s; use a path such as /bert/", prefix, why)
	}
	if !strings.HasPrefix(prefix, "/") {
		return "", bad("does not start with /")
	}
	if i := strings.IndexFunc(prefix, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '?' || r == '#' || r == '*' }); i >= 0 {
		return "", bad(fmt.Sprintf("holds %q, which a path prefix cannot", prefix[i]))
	}
	normalized := prefix
	if !strings.HasSuffix(normalized, "/") {
		normalized += "/"
	}
	if strings.Contains(normalized, "//") {
		return "", bad("holds an empty segment (//)")
	}
	for _, seg := range strings.Split(strings.Trim(normalized, "/"), "/") {
		if seg == "." || seg == ".." {
			return "", bad("holds a . or .. segment")
		}
	}
	return normalized, nil
}
