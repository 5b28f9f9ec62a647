package client

// DisableUnnamedFiles makes pulls write named temp files, as on systems
// without O_TMPFILE, until the returned function restores the default.
func DisableUnnamedFiles() (restore func()) {
	unnamedFiles.Store(false)
	return func() { unnamedFiles.Store(true) }
}

// SetLegacyBounds sets the bounds on extracting legacy directory archives
// until the returned function restores them.
func SetLegacyBounds(entries int, minExpanded, ratio int64) (restore func()) {
	e, m, r := legacyMaxEntries, legacyMinExpanded, legacyMaxRatio
	legacyMaxEntries, legacyMinExpanded, legacyMaxRatio = entries, minExpanded, ratio
	return func() { legacyMaxEntries, legacyMinExpanded, legacyMaxRatio = e, m, r }
}
