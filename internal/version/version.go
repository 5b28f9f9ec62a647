// Package version says which build of a modelx program is running, the
// same way for each of them.
package version

import "runtime/debug"

// String returns stamped, the version a build stamped into the program
// (go build -ldflags "-X main.version=…"), when it is set; else the module
// version the binary was built from (go install modelx.io/modelx/…@v1.2.3);
// else "dev".
func String(stamped string) string {
	if stamped != "" {
		return stamped
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
