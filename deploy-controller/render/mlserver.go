package render

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"modelx.io/modelx/deploy-controller/api/v1alpha1"
)

// DefaultMLServerImage is the MLServer image of a server without
// spec.server.image: the full image, with every runtime MLServer ships.
const DefaultMLServerImage = "seldonio/mlserver:1.7.1"

// MLServer's settings read from the environment (the MLSERVER_ prefix
// sets server settings, MLSERVER_MODEL_ a model's when no
// model-settings.json does).
const (
	// EnvMLServerModelsDir is the directory MLServer's image starts on
	// (`mlserver start $MLSERVER_MODELS_DIR`); it searches it for
	// model-settings.json files.
	EnvMLServerModelsDir = "MLSERVER_MODELS_DIR"
	// EnvMLServerImplementation is the runtime class of a model without
	// its own model-settings.json implementation.
	EnvMLServerImplementation = "MLSERVER_MODEL_IMPLEMENTATION"
	// EnvMLServerModelURI is where a model without its own
	// model-settings.json is; Seldon sets it to /mnt/models for a graph
	// node with a modelUri, render with mount image.
	EnvMLServerModelURI = "MLSERVER_MODEL_URI"
)

// MLServer's HTTP health endpoints (Open Inference Protocol).
const (
	healthReadyPath = "/v2/health/ready"
	healthLivePath  = "/v2/health/live"
)

// MLServerContainer is the server container of an MLServer predictor. Seldon
// v1 has no MLSERVER prepackaged server, so MLServer runs as a custom
// server: this container, named like the graph node, which has no
// implementation. Seldon then still pulls the model into /mnt/models with
// the storage initializer (the graph node has a modelUri), and sets the
// ports (MLSERVER_HTTP_PORT, MLSERVER_GRPC_PORT, adding the "http" and
// "grpc" container ports), MLSERVER_MODEL_NAME and MLSERVER_MODEL_URI, as
// it does for its own MLServer; we set what it sets only for prepackaged
// servers: the models directory and the implementation, and v2 health
// probes instead of its TCP ones.
func MLServerContainer(server v1alpha1.Server) corev1.Container {
	image := server.Image
	if image == "" {
		image = DefaultMLServerImage
	}
	env := []corev1.EnvVar{{Name: EnvMLServerModelsDir, Value: ModelMountPath}}
	if server.Implementation != "" {
		env = append(env, corev1.EnvVar{Name: EnvMLServerImplementation, Value: server.Implementation})
	}
	env = append(env, server.Env...)
	probe := func(path string, initialDelay int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:        corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString("http"), Scheme: corev1.URISchemeHTTP}},
			InitialDelaySeconds: initialDelay, PeriodSeconds: 5, TimeoutSeconds: 5, SuccessThreshold: 1, FailureThreshold: 3,
		}
	}
	return corev1.Container{
		Name: GraphNodeName, Image: image, Env: env,
		ReadinessProbe: probe(healthReadyPath, 5),
		LivenessProbe:  probe(healthLivePath, 30),
	}
}

// reservedEnv are the server-container variables that Seldon v1.19 sets
// itself (operator/controllers/seldondeployment_controller.go:
// createContainerService, addPortEnvs, addModelEnvs; mlserver.go) or that
// render sets, each with what to do instead. Seldon appends some after
// ours, so that the pod would see its value, and keeps ours for others,
// so that its ports and Services would not match the server: either way
// the spec would not mean what it says.
var reservedEnv = map[string]string{
	"PREDICTIVE_UNIT_SERVICE_PORT":         "Seldon sets the server's ports",
	"PREDICTIVE_UNIT_HTTP_SERVICE_PORT":    "Seldon sets the server's ports",
	"PREDICTIVE_UNIT_GRPC_SERVICE_PORT":    "Seldon sets the server's ports",
	"PREDICTIVE_UNIT_METRICS_SERVICE_PORT": "Seldon sets the metrics port",
	"PREDICTIVE_UNIT_METRICS_ENDPOINT":     "Seldon sets the metrics path",
	"PREDICTIVE_UNIT_PARAMETERS":           "Seldon sets the graph node's parameters",
	"PREDICTIVE_UNIT_ID":                   "Seldon sets it to the graph node's name",
	"PREDICTIVE_UNIT_IMAGE":                "Seldon sets it to the container's image",
	"PREDICTOR_ID":                         "Seldon sets it to the predictor's name",
	"PREDICTOR_LABELS":                     "Seldon sets it to the predictor's labels",
	"SELDON_DEPLOYMENT_ID":                 "Seldon sets it to the SeldonDeployment's name",
	"SELDON_EXECUTOR_ENABLED":              "Seldon sets it",
	"MLSERVER_HTTP_PORT":                   "Seldon sets the server's ports",
	"MLSERVER_GRPC_PORT":                   "Seldon sets the server's ports",
	"MLSERVER_METRICS_PORT":                "Seldon sets the metrics port",
	"MLSERVER_METRICS_ENDPOINT":            "Seldon sets the metrics path",
	"MLSERVER_MODEL_NAME":                  "Seldon names the model after the graph node (model), the name requests use",
	EnvMLServerModelURI:                    "the model is at /mnt/models",
	EnvMLServerModelsDir:                   "the model is pulled into /mnt/models",
	EnvMLServerImplementation:              "set spec.server.implementation",
}

// validateServerEnv refuses a spec.server.env variable that Seldon or
// render sets, naming it and what to do instead.
func validateServerEnv(server v1alpha1.Server) error {
	for _, e := range server.Env {
		if why, ok := reservedEnv[e.Name]; ok {
			return fmt.Errorf("spec.server.env sets %s, which the deployment sets itself (%s): remove it", e.Name, why)
		}
		if strings.HasPrefix(e.Name, "PREDICTIVE_UNIT_") {
			return fmt.Errorf("spec.server.env sets %s: Seldon owns the PREDICTIVE_UNIT_* variables: remove it", e.Name)
		}
	}
	return nil
}
