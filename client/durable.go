package client

import (
	"os"
	"strings"
	"sync"
)

// How a pull makes what it writes survive (docs/reliability.md, "What a
// pull makes durable"):
//
//   - A killed process (kill -9, out of memory, an evicted pod) loses
//     nothing it wrote: the page cache outlives it. A file appears at its
//     name only complete and verified (rename or link), so this needs no
//     fsync.
//   - A kernel crash or power loss loses what was not written back yet.
//     Where the kernel names its boot (Linux's boot_id), a pull does not
//     fsync: the hash cache records the boot each file was written in, and
//     a later push or pull in another boot hashes such a file again before
//     it trusts it, and fetches it again when it lost bytes. An init
//     container's emptyDir does not outlive the node's crash anyway.
//   - PullOptions.Sync flushes the filesystem once at the end (syncfs), for
//     a caller that needs the files durable when Pull returns; the cache
//     then records them as durable.
//   - Where there is no boot ID, every file is fsynced before it gets its
//     name, as a careful writer does.

// bootID names the running kernel's boot, or is "" where it cannot be
// known; it changes with every boot.
var bootID = sync.OnceValue(func() string {
	data, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
})
