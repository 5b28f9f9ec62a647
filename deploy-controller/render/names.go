package render

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"modelx.io/modelx/deploy-controller/api/v1alpha1"
)

// AnnotationSeldonSvcName, on a predictor, names the Service Seldon makes
// for it (seldon-core v1.19 operator,
// apis/machinelearning.seldon.io/v1/seldondeployment_types.go:
// ANNOTATION_CUSTOM_SVC_NAME, read by GetPredictorKey). Without it Seldon
// names the Service SDNAME-PREDICTOR, or "seldon-" and an md5 of that when it
// is longer than 63 characters; with it we know the name without repeating
// Seldon's rule.
const AnnotationSeldonSvcName = "seldon.io/svc-name"

// RoutingSuffix ends the names of the VirtualService and Gateway we render,
// so that they never take the name of the VirtualService Seldon's own
// Istio integration makes (the SeldonDeployment's name).
const RoutingSuffix = "-modelx"

// RoutingName names md's VirtualService and Gateway: NAME-modelx.
func RoutingName(md *v1alpha1.ModelDeployment) string {
	return md.Name + RoutingSuffix
}

// serviceHashLength is how many hex digits of a hash make a shortened
// Service name unique.
const serviceHashLength = 10

// PredictorServiceName is the Service name of one of md's predictors, set
// as its seldon.io/svc-name annotation: NAME-PREDICTOR when that is a
// DNS-1035 label of at most 63 characters (Seldon's own choice then), else
// a prefix of the name made label-safe, a hash of NAME/PREDICTOR and the
// predictor's name, 63 characters at most. The same inputs always give the
// same name.
func PredictorServiceName(md *v1alpha1.ModelDeployment, predictor string) string {
	name := md.Name + "-" + predictor
	if len(validation.IsDNS1035Label(name)) == 0 {
		return name
	}
	sum := sha256.Sum256([]byte(md.Name + "/" + predictor))
	suffix := "-" + hex.EncodeToString(sum[:])[:serviceHashLength] + "-" + labelSafe(predictor)
	if len(suffix) > validation.DNS1035LabelMaxLength-2 {
		suffix = suffix[:validation.DNS1035LabelMaxLength-2]
	}
	prefix := labelSafe(md.Name)
	if prefix == "" || prefix[0] < 'a' || prefix[0] > 'z' {
		prefix = "m" + prefix
	}
	if room := validation.DNS1035LabelMaxLength - len(suffix); len(prefix) > room {
		prefix = prefix[:room]
	}
	return strings.TrimRight(prefix, "-") + strings.TrimRight(suffix, "-")
}

// labelSafe lowercases s and replaces what a DNS label cannot hold by '-'.
func labelSafe(s string) string {
	b := []byte(strings.ToLower(s))
	for i, c := range b {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			b[i] = '-'
		}
	}
	return strings.Trim(string(b), "-")
}

// PredictorServiceHost is the in-cluster host of a predictor's Service.
func PredictorServiceHost(md *v1alpha1.ModelDeployment, predictor string) string {
	return fmt.Sprintf("%s.%s.svc.cluster.local", PredictorServiceName(md, predictor), md.Namespace)
}
