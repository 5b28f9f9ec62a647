package storage_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"modelx.io/modelx/storage"
)

// testBackend is a backend only these tests register.
const testBackend = "factory-test"

func init() {
	storage.Register(testBackend, func(ctx context.Context, params storage.Params) (storage.Storage, error) {
		if err := params.Check(testBackend, "size", "fast"); err != nil {
			return nil, err
		}
		if _, err := params.Bool(testBackend, "fast"); err != nil {
			return nil, err
		}
		return nil, nil
	})
}

func TestOpenByName(t *testing.T) {
	ctx := context.Background()
	if !slices.Contains(storage.Backends(), testBackend) {
		t.Fatalf("Backends() = %v, missing %s", storage.Backends(), testBackend)
	}
	if _, err := storage.Open(ctx, testBackend, storage.Params{"size": "1", "fast": "true"}); err != nil {
		t.Fatalf("Open: %v", err)
	}
	for params, want := range map[*storage.Params]string{
		{"colour": "red", "size": "1"}: `factory-test: unknown setting "colour" (known: size, fast)`,
		{"fast": "quickly"}:            `factory-test: fast "quickly": want true or false`,
	} {
		if _, err := storage.Open(ctx, testBackend, *params); err == nil || err.Error() != want {
			t.Errorf("Open(%v) = %v, want %q", *params, err, want)
		}
	}
	if _, err := storage.Open(ctx, "tape", nil); err == nil || !strings.Contains(err.Error(), `no storage backend "tape"`) || !strings.Contains(err.Error(), testBackend) {
		t.Errorf("Open of an unknown backend: %v", err)
	}
}

func TestRegisterTwicePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("registering a name twice did not panic")
		}
	}()
	storage.Register(testBackend, func(context.Context, storage.Params) (storage.Storage, error) { return nil, nil })
}

func TestParamsBool(t *testing.T) {
	for v, want := range map[string]bool{"": false, "false": false, "true": true, "1": true} {
		got, err := storage.Params{"b": v}.Bool("x", "b")
		if err != nil || got != want {
			t.Errorf("Bool(%q) = %v, %v; want %v", v, got, err, want)
		}
	}
}
