package spec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"reflect"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// A JSON document can mean one thing to Go and another to other decoders.
// Go's encoding/json keeps the last of two equal keys (some decoders keep
// the first, some refuse), matches a struct field's key case-insensitively
// ("NAME" fills Name, where Python and jq see another key), and replaces
// invalid UTF-8 and unpaired surrogate escapes with U+FFFD. A manifest the
// registry validated as Go reads it could then name other files for a
// tool that reads it otherwise. checkManifestKeys refuses such documents.

// objectSchema lists the JSON keys of a struct that manifests decode into.
type objectSchema struct {
	fields [][]byte
	// child[i] is the schema of the objects in field i's value (the value
	// itself, or its array's elements); nil when their keys are free (a
	// map) or the value holds no objects.
	child []*objectSchema
}

// manifestSchema is derived from the Manifest type's json tags, so a new
// field is covered without a second list to update.
var manifestSchema = schemaOf(reflect.TypeFor[Manifest](), map[reflect.Type]*objectSchema{})

func schemaOf(t reflect.Type, done map[reflect.Type]*objectSchema) *objectSchema {
	if s := done[t]; s != nil {
		return s
	}
	s := &objectSchema{}
	done[t] = s
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		ft := f.Type
		if ft.Kind() == reflect.Slice {
			ft = ft.Elem()
		}
		var child *objectSchema
		if ft.Kind() == reflect.Struct && ft.PkgPath() == t.PkgPath() { // not time.Time
			child = schemaOf(ft, done)
		}
		s.fields = append(s.fields, []byte(name))
		s.child = append(s.child, child)
	}
	if len(s.fields) > 64 {
		panic("spec: objectSchema tracks at most 64 fields")
	}
	return s
}

// maxKeyDepth bounds nesting, as encoding/json does (it refuses deeper
// documents before checkManifestKeys sees them).
const maxKeyDepth = 10000

// manyKeys is how many free keys an object may have before they are
// compared by hash instead of each with every other.
const manyKeys = 16

// keyFrame is an open object or array.
type keyFrame struct {
	array  bool
	schema *objectSchema // object: its fields (nil: free keys); array: its elements'
	n      int           // array: index of the current element
	seen   uint64        // object with a schema: the fields seen
	keys   int           // object: where its free keys start in keyChecker.keys
	key    []byte        // object: the current member's key
	// An object of many free keys keeps, instead of them, their foldHash,
	// compared when it closes, and where each starts, to read them again
	// if two hashes are equal.
	hashes []uint64
	starts []uint32
}

type keyChecker struct {
	data  []byte
	pos   int
	stack []keyFrame
	keys  []keyRef // the free keys (not known fields) of the open objects of few keys
}

type keyRef struct {
	key []byte
	at  int // where it starts in the document
}

// checkManifestKeys refuses a manifest document that is not valid UTF-8,
// has an escape of half a surrogate pair, has two keys in one object that
// are equal or differ only in case (at any depth), or has a key that
// matches a known field only case-insensitively ("Name", "DIGEST"). Other
// unknown keys are accepted, for forward compatibility. data is valid JSON
// (json.Unmarshal accepted it); anything else is refused as such.
//
// One pass, in linear time but for sorting the key hashes of objects of
// many keys; no allocation but for the stack, escaped keys and those
// hashes.
func checkManifestKeys(data []byte) error {
	if !utf8.Valid(data) {
		i := 0
		for i < len(data) {
			r, n := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && n == 1 {
				break
			}
			i += n
		}
		return Errorf(ErrorManifestInvalid, "manifest is not valid UTF-8 (byte %d)", i)
	}
	if len(data) > 1<<32-1 { // offsets are kept in uint32
		return Errorf(ErrorManifestInvalid, "manifest of %d bytes is too large to check", len(data))
	}
	c := keyChecker{data: data, stack: make([]keyFrame, 0, 8)}
	return c.run()
}

func (c *keyChecker) syntax() error {
	return Errorf(ErrorManifestInvalid, "manifest is not valid JSON (byte %d)", c.pos)
}

func (c *keyChecker) ws() {
	for c.pos < len(c.data) {
		switch c.data[c.pos] {
		case ' ', '\t', '\n', '\r':
			c.pos++
		default:
			return
		}
	}
}

func (c *keyChecker) run() error {
	schema := manifestSchema // for the objects in the next value
	var err error
	for {
		c.ws()
		if c.pos >= len(c.data) {
			return c.syntax()
		}
		switch b := c.data[c.pos]; b {
		case '{', '[':
			if len(c.stack) >= maxKeyDepth {
				return c.syntax()
			}
			c.pos++
			c.stack = append(c.stack, keyFrame{array: b == '[', schema: schema, keys: len(c.keys)})
			c.ws()
			if c.pos < len(c.data) && c.data[c.pos] == b+2 { // '}' or ']'
				c.pos++
				if err := c.pop(); err != nil {
					return err
				}
				break
			}
			if b == '[' {
				continue // schema stays: the elements'
			}
			if schema, err = c.member(); err != nil {
				return err
			}
			continue
		case '"':
			if _, err := c.str(false); err != nil {
				return err
			}
		default:
			if err := c.literal(); err != nil {
				return err
			}
		}
		// A value ended: close what ends with it, then go on to the next
		// element or member.
		for next := false; !next; {
			if len(c.stack) == 0 {
				if c.ws(); c.pos != len(c.data) {
					return c.syntax()
				}
				return nil
			}
			c.ws()
			if c.pos >= len(c.data) {
				return c.syntax()
			}
			top := &c.stack[len(c.stack)-1]
			b := c.data[c.pos]
			c.pos++
			switch {
			case b == ',' && top.array:
				top.n++
				schema, next = top.schema, true
			case b == ',':
				if schema, err = c.member(); err != nil {
					return err
				}
				next = true
			case b == ']' && top.array, b == '}' && !top.array:
				if err := c.pop(); err != nil {
					return err
				}
			default:
				c.pos--
				return c.syntax()
			}
		}
	}
}

// pop closes the top object or array. An object of many free keys has its
// keys compared now: sorted by hash, equal keys are neighbours.
func (c *keyChecker) pop() error {
	top := &c.stack[len(c.stack)-1]
	if hs := top.hashes; hs != nil {
		slices.Sort(hs)
		for i := 1; i < len(hs); i++ {
			if hs[i] == hs[i-1] {
				if err := c.findClash(top.starts); err != nil {
					return err
				}
				break // only keys with one hash by chance
			}
		}
	}
	if !top.array {
		clear(c.keys[top.keys:]) // let go of unescaped keys
		c.keys = c.keys[:top.keys]
	}
	c.stack = c.stack[:len(c.stack)-1]
	return nil
}

// findClash reads the keys that start at starts again and returns the
// error for the first that equals an earlier one but for case, if any.
func (c *keyChecker) findClash(starts []uint32) error {
	type seen struct {
		key []byte
		at  int
	}
	byHash := make(map[uint64][]seen, len(starts))
	for _, at := range starts {
		r := keyChecker{data: c.data, pos: int(at)}
		k, err := r.str(true)
		if err != nil {
			return err
		}
		h := foldHash(k)
		for _, e := range byHash[h] {
			if bytes.EqualFold(e.key, k) {
				return c.clash(e.key, k, int(at))
			}
		}
		byHash[h] = append(byHash[h], seen{k, int(at)})
	}
	return nil
}

// literal skips a number, true, false or null.
func (c *keyChecker) literal() error {
	start := c.pos
	for c.pos < len(c.data) {
		switch c.data[c.pos] {
		case ',', ':', '}', ']', ' ', '\t', '\n', '\r':
			if c.pos == start {
				return c.syntax()
			}
			return nil
		}
		c.pos++
	}
	return nil
}

// str reads the string at c.pos and, for a key, returns its text
// (unescaped). It refuses an escaped half of a surrogate pair, which
// decoders turn into different text.
func (c *keyChecker) str(key bool) ([]byte, error) {
	if c.pos >= len(c.data) || c.data[c.pos] != '"' {
		return nil, c.syntax()
	}
	start := c.pos + 1
	i := start
	escaped := false
	q := -1 // the first '"' at or after i; found again only once passed, so a long string of escapes costs linear time
	for {
		if q < i {
			j := bytes.IndexByte(c.data[i:], '"')
			if j < 0 {
				c.pos = len(c.data)
				return nil, c.syntax()
			}
			q = i + j
		}
		bs := bytes.IndexByte(c.data[i:q], '\\')
		if bs < 0 {
			i = q
			break
		}
		escaped = true
		i += bs
		if i+1 >= len(c.data) {
			c.pos = i
			return nil, c.syntax()
		}
		if c.data[i+1] != 'u' {
			i += 2
			continue
		}
		r, ok := hex4(c.data, i+2)
		switch {
		case !ok:
			c.pos = i
			return nil, c.syntax()
		case 0xDC00 <= r && r <= 0xDFFF:
			return nil, Errorf(ErrorManifestInvalid, "manifest has the escape \\u%04X, half of a surrogate pair without its other half (byte %d)", r, i)
		case 0xD800 <= r && r <= 0xDBFF:
			lo, ok := rune(0), i+12 <= len(c.data) && c.data[i+6] == '\\' && c.data[i+7] == 'u'
			if ok {
				lo, ok = hex4(c.data, i+8)
			}
			if !ok || lo < 0xDC00 || lo > 0xDFFF {
				return nil, Errorf(ErrorManifestInvalid, "manifest has the escape \\u%04X, half of a surrogate pair without its other half (byte %d)", r, i)
			}
			i += 12
		default:
			i += 6
		}
	}
	c.pos = i + 1
	if !key {
		return nil, nil
	}
	if !escaped {
		return c.data[start:i], nil
	}
	var s string
	if err := json.Unmarshal(c.data[start-1:i+1], &s); err != nil {
		c.pos = start - 1
		return nil, c.syntax()
	}
	return []byte(s), nil
}

func hex4(data []byte, i int) (rune, bool) {
	if i+4 > len(data) {
		return 0, false
	}
	var r rune
	for _, b := range data[i : i+4] {
		switch {
		case '0' <= b && b <= '9':
			b -= '0'
		case 'a' <= b && b <= 'f':
			b -= 'a' - 10
		case 'A' <= b && b <= 'F':
			b -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(b)
	}
	return r, true
}

// member reads a member's key and colon in the top object, checks the key
// against the object's other keys and fields, and returns the schema of
// the objects in the member's value.
func (c *keyChecker) member() (*objectSchema, error) {
	c.ws()
	at := c.pos
	key, err := c.str(true)
	if err != nil {
		return nil, err
	}
	c.ws()
	if c.pos >= len(c.data) || c.data[c.pos] != ':' {
		return nil, c.syntax()
	}
	c.pos++
	top := &c.stack[len(c.stack)-1]
	top.key = key
	if s := top.schema; s != nil {
		for i, f := range s.fields {
			if string(key) == string(f) {
				if top.seen&(1<<i) != 0 {
					return nil, c.clash(key, key, at)
				}
				top.seen |= 1 << i
				return s.child[i], nil
			}
		}
		for _, f := range s.fields {
			if bytes.EqualFold(key, f) {
				return nil, Errorf(ErrorManifestInvalid, "manifest has the key %q in %s (byte %d), which is not %q: keys are case-sensitive (Go would read it as %q, other decoders would not)", key, c.where(), at, f, f)
			}
		}
		// An unknown key: accepted, as long as it is unique.
	}
	if top.hashes != nil {
		top.hashes = append(top.hashes, foldHash(key))
		top.starts = append(top.starts, uint32(at))
		return nil, nil
	}
	for _, k := range c.keys[top.keys:] {
		if bytes.EqualFold(k.key, key) {
			return nil, c.clash(k.key, key, at)
		}
	}
	c.keys = append(c.keys, keyRef{key, at})
	if len(c.keys)-top.keys > manyKeys {
		// From here on, comparing each key with all others would take
		// quadratic time: hash them, and compare when the object closes.
		top.hashes = make([]uint64, 0, 4*manyKeys)
		top.starts = make([]uint32, 0, 4*manyKeys)
		for _, k := range c.keys[top.keys:] {
			top.hashes = append(top.hashes, foldHash(k.key))
			top.starts = append(top.starts, uint32(k.at))
		}
		clear(c.keys[top.keys:])
		c.keys = c.keys[:top.keys]
	}
	return nil, nil
}

// clash is the error for key, at byte at (-1: unknown), after earlier in
// the top object.
func (c *keyChecker) clash(earlier, key []byte, at int) error {
	where := c.where()
	if at >= 0 {
		where += fmt.Sprintf(" (byte %d)", at)
	}
	if bytes.Equal(earlier, key) {
		return Errorf(ErrorManifestInvalid, "manifest has the key %q twice in %s: decoders differ on which one counts", key, where)
	}
	return Errorf(ErrorManifestInvalid, "manifest has the keys %q and %q in %s, which differ only in case: Go reads them as one key, other decoders as two", earlier, key, where)
}

// foldSeed seeds foldHash: random, so no document can choose keys that
// collide (keys of one hash are compared pairwise).
var foldSeed = maphash.MakeSeed()

// foldHash hashes key so that two keys bytes.EqualFold calls equal hash
// alike.
func foldHash(key []byte) uint64 {
	var buf [128]byte
	return maphash.Bytes(foldSeed, foldKey(buf[:0], key))
}

// foldKey appends a form of key that is equal for two keys exactly when
// bytes.EqualFold says they are (encoding/json's foldName).
func foldKey(dst, key []byte) []byte {
	for i := 0; i < len(key); {
		if b := key[i]; b < utf8.RuneSelf {
			if 'a' <= b && b <= 'z' {
				b -= 'a' - 'A'
			}
			dst = append(dst, b)
			i++
			continue
		}
		r, n := utf8.DecodeRune(key[i:])
		dst = utf8.AppendRune(dst, unicode.ToUpper(unicode.ToLower(r)))
		i += n
	}
	return dst
}

// where names the top object, as a path from the document's root:
// "blobs[2].files[7]", or "the top-level object".
func (c *keyChecker) where() string {
	var b strings.Builder
	for i, f := range c.stack[:len(c.stack)-1] {
		if f.array {
			fmt.Fprintf(&b, "[%d]", f.n)
			continue
		}
		if isIdent(f.key) {
			if i > 0 {
				b.WriteByte('.')
			}
			b.Write(f.key)
		} else {
			fmt.Fprintf(&b, "[%q]", f.key)
		}
	}
	if b.Len() == 0 {
		return "the top-level object"
	}
	return b.String()
}

func isIdent(key []byte) bool {
	if len(key) == 0 {
		return false
	}
	for _, b := range key {
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '_') {
			return false
		}
	}
	return true
}
