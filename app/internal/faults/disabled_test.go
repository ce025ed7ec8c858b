//go:build !faults

package faults

import "testing"

func TestDisabledBuildIgnoresEverything(t *testing.T) {
	if Enabled {
		t.Fatal("Enabled in a build without -tags faults")
	}
	for _, v := range []string{"1", "0.5", "nonsense"} {
		s, err := Load(func(string) (string, bool) { return v, true })
		if err != nil || s != (Settings{}) {
			t.Errorf("Load with every variable %q = %+v, %v; want zero settings, nil", v, s, err)
		}
	}
	if Middleware(Settings{ErrorRate: 1, Latency: 1}) != nil {
		t.Error("Middleware returned a handler in a build without -tags faults")
	}
}
