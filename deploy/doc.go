// Package deploy holds the Helm chart that installs modelx on Kubernetes
// (helm/modelx: modelxd and modelx-controller; docs/install.md), the
// modelx ClusterStorageContainers for KServe (kserve/), and the JSON patch
// that teaches Seldon's SeldonDeployment CRD image volumes
// (seldon/crd-image-volumes.json, for model.mount: image; docs/deploy.md,
// tested by deploy-controller/controller). It has no code: its tests lint and render the chart with the pinned helm that
// `make tools` builds, check what the renders say, and create every
// rendered object, dry run and with strict field validation, on a real
// kube-apiserver.
package deploy
