package storage

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Params are the settings of one backend, by the names its package
// documents (fs: "dir"; s3: "bucket", "endpoint", …). Values are strings,
// as flags, environment variables and configuration files give them; each
// backend parses and checks its own, and refuses names it does not know.
type Params map[string]string

// Factory opens a backend of one kind from its params, and checks that it
// is usable (reachable, writable) before returning it.
type Factory func(ctx context.Context, params Params) (Storage, error)

// factories are the registered backends by name.
var factories = struct {
	sync.RWMutex
	byName map[string]Factory
}{byName: map[string]Factory{}}

// Register makes a backend available to Open under name. Backends register
// themselves in their package's init, as database/sql drivers do: a
// program offers the backends it imports (for effect, if it needs nothing
// else of them), and this package imports none. Registering a name twice,
// or a nil factory, panics: both are mistakes in the program.
func Register(name string, f Factory) {
	factories.Lock()
	defer factories.Unlock()
	if f == nil {
		panic("storage: Register " + name + " with a nil factory")
	}
	if _, dup := factories.byName[name]; dup {
		panic("storage: Register called twice for " + name)
	}
	factories.byName[name] = f
}

// Backends returns the names of the registered backends, sorted.
func Backends() []string {
	factories.RLock()
	defer factories.RUnlock()
	return slices.Sorted(maps.Keys(factories.byName))
}

// Open opens the backend registered as name with params, wrapped (see
// Wrap) without an observer: keys are validated before the backend sees
// them, and the store has exactly the backend's optional capabilities.
func Open(ctx context.Context, name string, params Params) (Storage, error) {
	factories.RLock()
	f, ok := factories.byName[name]
	factories.RUnlock()
	if !ok {
		return nil, fmt.Errorf("no storage backend %q in this program (it has: %s)", name, strings.Join(Backends(), ", "))
	}
	s, err := f(ctx, params)
	if err != nil {
		return nil, err
	}
	return Wrap(s, nil), nil
}

// Check refuses params whose names are not among known, naming the first
// (in name order) and what backend would have taken.
func (p Params) Check(backend string, known ...string) error {
	for _, name := range slices.Sorted(maps.Keys(p)) {
		if !slices.Contains(known, name) {
			return fmt.Errorf("%s: unknown setting %q (known: %s)", backend, name, strings.Join(known, ", "))
		}
	}
	return nil
}

// Bool reads a true/false param; an absent or empty one is false.
func (p Params) Bool(backend, name string) (bool, error) {
	v := p[name]
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s: %s %q: want true or false", backend, name, v)
	}
	return b, nil
}
