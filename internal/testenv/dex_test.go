package testenv

import "testing"

func TestDexStarts(t *testing.T) {
	d := StartDex(t, DexOptions{})
	if tok := d.Token(t, "modelx", "alice@example.com"); len(tok) < 100 {
		t.Fatal(tok)
	}
}
