package testenv

import (
	"encoding/binary"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
)

// CrashTrials is the number of kills a crash test makes:
// MODELX_CRASH_TRIALS, or def.
func CrashTrials(t testing.TB, def int) int {
	t.Helper()
	v := os.Getenv("MODELX_CRASH_TRIALS")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("MODELX_CRASH_TRIALS=%q: want a positive number", v)
	}
	return n
}

// CrashSeed is a crash test's base seed: MODELX_CRASH_SEED, or 1.
func CrashSeed(t testing.TB) uint64 {
	t.Helper()
	v := os.Getenv("MODELX_CRASH_SEED")
	if v == "" {
		return 1
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		t.Fatalf("MODELX_CRASH_SEED=%q: want an unsigned number", v)
	}
	return n
}

// SeededRand returns a generator and its byte source for seed, kept apart
// from other uses of the same seed by domain.
func SeededRand(seed uint64, domain string) (*rand.Rand, *rand.ChaCha8) {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:8], seed)
	copy(s[8:], domain)
	cc := rand.NewChaCha8(s)
	return rand.New(cc), cc
}
