// Package build holds the Dockerfiles of the three programs
// (modelxd.Dockerfile, modelx.Dockerfile, modelx-controller.Dockerfile),
// built by `make images`. It has no code: its tests check the Dockerfiles
// against the repository (the packages they build, the Go version, the
// user they run as), since building images needs a Docker engine.
package build
