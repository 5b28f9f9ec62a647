package client

import "modelx.io/modelx/client/chunker"

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

// CacheBoots returns the boot each file in dir's hash cache was recorded
// under ("" for durable), by name.
func CacheBoots(dir string, params chunker.Params) map[string]string {
	c := loadCache(dir, params)
	out := map[string]string{}
	for name, f := range c.data.Files {
		out[name] = f.Boot
	}
	return out
}

// RebootCache rewrites dir's hash cache and summary as if this boot were
// another: what a reboot makes of them.
func RebootCache(dir string, params chunker.Params) error {
	c := loadCache(dir, params)
	for name, f := range c.data.Files {
		if f.Boot != "" {
			f.Boot = "an-earlier-boot"
			c.data.Files[name] = f
		}
	}
	c.dirty = true
	if s := loadSummary(dir); s != nil && s.Boot != "" {
		s.Boot = "an-earlier-boot"
		saveSummary(dir, *s)
	}
	return c.save()
}
