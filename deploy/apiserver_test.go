package deploy

import (
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"modelx.io/modelx/internal/testenv"
	"modelx.io/modelx/internal/testenv/kubeenv"
)

// TestChartAgainstAPIServer creates every object of every successful
// render on a real kube-apiserver, dry run with strict field validation,
// so that a misspelled or misplaced field, a wrong type or an invalid
// value fails. The chart's CRD is installed first, as Helm installs crds/,
// and so are the Prometheus Operator's ServiceMonitor CRD and KServe's CRDs
// (the ClusterStorageContainers). Namespaced
// objects go into the case's namespace, created for the purpose.
func TestChartAgainstAPIServer(t *testing.T) {
	helm := testenv.RequireHelm(t)
	kube := kubeenv.StartKube(t, filepath.Join(chartDir, "crds"), kubeenv.ServiceMonitorCRD(t), kubeenv.KServeCRDs(t))
	c, err := client.New(kube.Config, client.Options{FieldValidation: metav1.FieldValidationStrict})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()

	// The check itself: strict validation refuses an unknown field.
	bad := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "probe", "namespace": "default"},
		"dataa":    map[string]any{"k": "v"},
	}}
	if err := c.Create(ctx, bad, client.DryRunAll); err == nil || !strings.Contains(err.Error(), "unknown field") {
		t.Fatalf("a ConfigMap with an unknown field: %v, want an unknown-field error", err)
	}

	for _, tc := range renderCases {
		if tc.wantErr != "" {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			out, err := helmTemplate(t, helm, tc)
			if err != nil {
				t.Fatal(err)
			}
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespaceOf(tc)}}
			if err := c.Create(ctx, ns); err != nil {
				t.Fatalf("create namespace: %v", err)
			}
			for _, o := range parseObjects(t, out).objs {
				namespaced, err := c.IsObjectNamespaced(o)
				if err != nil {
					t.Errorf("%s %s: %v", o.GetKind(), o.GetName(), err)
					continue
				}
				if namespaced && o.GetNamespace() != ns.Name {
					t.Errorf("%s %s in namespace %q, want %q", o.GetKind(), o.GetName(), o.GetNamespace(), ns.Name)
				}
				if !namespaced && o.GetNamespace() != "" {
					t.Errorf("cluster-scoped %s %s has a namespace", o.GetKind(), o.GetName())
				}
				if err := c.Create(ctx, o, client.DryRunAll); err != nil {
					t.Errorf("%s %s: %v", o.GetKind(), o.GetName(), err)
				}
			}
		})
	}
}
