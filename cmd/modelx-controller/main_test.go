package main

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestInitializerOptions(t *testing.T) {
	good := config{initializerCPURequest: "250m", initializerCPULimit: "2", initializerMemoryRequest: "512Mi", initializerMemoryLimit: "2Gi"}
	opts, err := good.initializerOptions()
	if err != nil {
		t.Fatal(err)
	}
	r := opts.Resources
	if q := r.Requests[corev1.ResourceCPU]; q.String() != "250m" {
		t.Errorf("cpu request %s", q.String())
	}
	if q := r.Limits[corev1.ResourceMemory]; q.String() != "2Gi" {
		t.Errorf("memory limit %s", q.String())
	}
	for _, tc := range []struct {
		mutate func(*config)
		want   string
	}{
		{func(c *config) { c.initializerCPULimit = "lots" }, "--initializer-cpu-limit"},
		{func(c *config) { c.initializerMemoryRequest = "4Gi" }, "memory request 4Gi is above its limit 2Gi"},
	} {
		c := good
		tc.mutate(&c)
		if _, err := c.initializerOptions(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want one containing %q", err, tc.want)
		}
	}
}
