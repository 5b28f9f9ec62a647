// Package deploy holds the Helm chart that installs modelx on Kubernetes
// (helm/modelx: modelxd and modelx-controller; docs/install.md). It has no
// code: its tests lint and render the chart with the pinned helm that
// `make tools` builds, check what the renders say, and create every
// rendered object, dry run and with strict field validation, on a real
// kube-apiserver.
package deploy
