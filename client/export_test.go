package client

// DisableUnnamedFiles makes pulls write named temp files, as on systems
// without O_TMPFILE, until the returned function restores the default.
func DisableUnnamedFiles() (restore func()) {
	unnamedFiles.Store(false)
	return func() { unnamedFiles.Store(true) }
}
