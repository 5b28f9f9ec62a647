package render

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"

	"modelx.io/modelx/deploy-controller/api/v1alpha1"
)

// AnnotationSpecHash marks a predictor with a hash of its rendered spec
// (traffic aside). Seldon copies predictor annotations onto the
// Deployments it creates, so the controller knows whether a Deployment
// already runs what was rendered, and not a spec from before.
const AnnotationSpecHash = "deploy.modelx.io/spec-hash"

// StampSpecHashes sets AnnotationSpecHash on every predictor of sd.
func StampSpecHashes(sd *SeldonDeployment) {
	for i := range sd.Spec.Predictors {
		p := &sd.Spec.Predictors[i]
		h := PredictorSpecHash(*p)
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations[AnnotationSpecHash] = h
	}
}

// PredictorSpecHash is a short hash of what a predictor's pods run: its
// spec without the traffic share (which moves without touching the pods)
// and without the hash annotation itself.
func PredictorSpecHash(p PredictorSpec) string {
	p.Traffic = 0
	if p.Annotations != nil {
		a := make(map[string]string, len(p.Annotations))
		for k, v := range p.Annotations {
			if k != AnnotationSpecHash {
				a[k] = v
			}
		}
		p.Annotations = a
	}
	return shortHash(p)
}

// shortHash is 16 hex digits of the sha256 of v's JSON (map keys marshal
// sorted: the hash is stable).
func shortHash(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // plain data: cannot fail
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// LabelName carries the ModelDeployment's name on every object rendered
// for it and, through Seldon, on its Deployments and pods.
const LabelName = "deploy.modelx.io/name"

// LabelDigest carries the first 12 hex digits of a version's manifest
// digest on the pods that serve it (label values are at most 63
// characters): a selector of one version's pods.
const LabelDigest = "deploy.modelx.io/digest"

// VersionLabels are the labels of the pods that serve md's version with
// this digest: Labels(md) and LabelDigest.
func VersionLabels(md *v1alpha1.ModelDeployment, digest string) map[string]string {
	labels := Labels(md)
	labels[LabelDigest] = strings.TrimPrefix(digest, "sha256:")[:12]
	return labels
}

// AnnotationDigest carries a predictor's manifest digest; Seldon copies it
// onto the predictor's Deployment and pod template.
const AnnotationDigest = "deploy.modelx.io/digest"
