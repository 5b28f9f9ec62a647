package pack

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

type files map[string][]byte

func (fs files) entries() []Entry {
	var out []Entry
	for name, data := range fs {
		out = append(out, Entry{Name: name, Mode: 0o644, Size: int64(len(data)), Digest: digest.FromBytes(data)})
	}
	return out
}

func (fs files) open(name string) (io.ReadCloser, error) {
	data, ok := fs[name]
	if !ok {
		return nil, fmt.Errorf("no file %s", name)
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}

func sample(n int, seed uint64) files {
	r := rand.New(rand.NewPCG(seed, 1))
	fs := files{}
	for i := range n {
		data := make([]byte, r.IntN(2000))
		for j := range data {
			data[j] = byte('a' + r.IntN(6)) // compressible
		}
		fs[fmt.Sprintf("dir%d/sub/file-%04d.json", i%7, i)] = data
	}
	fs["empty"] = nil
	fs["ünïcode/名前.txt"] = []byte("unicode")
	return fs
}

func TestPackRoundTripAndDeterminism(t *testing.T) {
	fs := sample(300, 1)
	entries := fs.entries()
	for _, g := range Group(entries) {
		pack, recs, err := Build(nil, g, fs.open)
		if err != nil {
			t.Fatal(err)
		}
		// Shuffled input order within the group gives the same bytes once sorted by Group.
		shuffled := slices.Clone(g)
		rand.New(rand.NewPCG(2, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		again, _, err := Build(nil, Group(shuffled)[0], fs.open)
		if err != nil {
			t.Fatal(err)
		}
		if len(Group(shuffled)) == 1 && !bytes.Equal(pack, again) {
			t.Fatal("pack bytes depend on input order")
		}
		for _, rec := range recs {
			frame, err := Frame(pack, rec)
			if err != nil {
				t.Fatal(err)
			}
			data, err := Decode(frame, rec)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(data, fs[rec.Name]) {
				t.Fatalf("%s: decoded bytes differ", rec.Name)
			}
		}
	}
}

func packDigests(t *testing.T, fs files) []digest.Digest {
	t.Helper()
	var out []digest.Digest
	for _, g := range Group(fs.entries()) {
		pack, _, err := Build(nil, g, fs.open)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, digest.FromBytes(pack))
	}
	return out
}

func changed(a, b []digest.Digest) int {
	n := 0
	for _, d := range b {
		if !slices.Contains(a, d) {
			n++
		}
	}
	return n
}

func TestGroupingIsStable(t *testing.T) {
	fs := sample(2000, 3)
	before := packDigests(t, fs)
	if len(before) < 10 {
		t.Fatalf("only %d packs for 2000 files", len(before))
	}
	fs["dir3/sub/file-0500.json"] = []byte("edited")
	if n := changed(before, packDigests(t, fs)); n != 1 {
		t.Fatalf("editing one file changed %d packs, want 1", n)
	}
	fs["dir3/sub/file-0500-new.json"] = []byte("added")
	if n := changed(before, packDigests(t, fs)); n > 2 {
		t.Fatalf("adding a file changed %d packs, want at most 2", n)
	}
}

func TestGroupBounds(t *testing.T) {
	var entries []Entry
	for i := range 5000 {
		entries = append(entries, Entry{Name: fmt.Sprintf("f%05d", i), Size: 100 << 10})
	}
	total := 0
	for _, g := range Group(entries) {
		var bytes int64
		for _, e := range g {
			bytes += e.Size
		}
		if len(g) > maxGroupFiles || bytes > maxGroupBytes+100<<10 {
			t.Fatalf("group of %d files, %d bytes exceeds the bounds", len(g), bytes)
		}
		total += len(g)
	}
	if total != 5000 || len(Group(nil)) != 0 {
		t.Fatalf("grouping lost files: %d", total)
	}
}

func TestChangedFileFailsThePack(t *testing.T) {
	fs := files{"a": []byte("one"), "b": []byte("two")}
	entries := fs.entries()
	fs["b"] = []byte("TWO")
	if _, _, err := Build(nil, Group(entries)[0], fs.open); err == nil || !strings.Contains(err.Error(), "changed") {
		t.Fatalf("Build over a changed file: %v", err)
	}
}

func TestDecodeDetectsCorruption(t *testing.T) {
	fs := files{"a": bytes.Repeat([]byte("model "), 100)}
	pack, recs, err := Build(nil, fs.entries(), fs.open)
	if err != nil {
		t.Fatal(err)
	}
	bad := slices.Clone(pack)
	bad[len(bad)/2] ^= 0xff
	if _, err := Decode(bad, recs[0]); err == nil {
		t.Fatal("corrupt frame decoded")
	}
	rec := recs[0]
	rec.Digest = digest.FromString("other")
	if _, err := Decode(pack, rec); err == nil || !strings.Contains(err.Error(), "digest") {
		t.Fatalf("wrong digest: %v", err)
	}
	rec = recs[0]
	rec.Length = int64(len(pack)) + 1
	if _, err := Frame(pack, rec); err == nil {
		t.Fatal("frame past the end accepted")
	}
}
