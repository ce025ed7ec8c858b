package ginmode

import "testing"

func TestValid(t *testing.T) {
	for mode, want := range map[string]bool{
		"debug": true, "release": true, "test": true,
		"": false, "Release": false, "prod": false,
	} {
		if got := Valid(mode); got != want {
			t.Errorf("Valid(%q) = %v, want %v", mode, got, want)
		}
	}
}

func TestLookupReturnsOriginalGinMode(t *testing.T) {
	saved, savedPresent := original, present
	t.Cleanup(func() { original, present = saved, savedPresent })
	original, present = "bogus", true

	lookup := Lookup(func(k string) (string, bool) {
		if k == "PORT" {
			return "1234", true
		}
		return "", false
	})
	if v, ok := lookup(Name); v != "bogus" || !ok {
		t.Errorf("lookup(GIN_MODE) = %q, %v", v, ok)
	}
	if v, ok := lookup("PORT"); v != "1234" || !ok {
		t.Errorf("lookup(PORT) = %q, %v", v, ok)
	}
}
