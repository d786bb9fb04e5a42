package connect

import (
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// luminance is the WCAG 2 relative luminance of #rrggbb.
func luminance(t *testing.T, hex string) float64 {
	t.Helper()
	hex = strings.TrimPrefix(hex, "#")
	if len(hex) != 6 {
		t.Fatalf("colour %q is not #rrggbb", hex)
	}
	var c [3]float64
	for i := range 3 {
		v, err := strconv.ParseUint(hex[2*i:2*i+2], 16, 8)
		if err != nil {
			t.Fatal(err)
		}
		s := float64(v) / 255
		if s <= 0.04045 {
			c[i] = s / 12.92
		} else {
			c[i] = math.Pow((s+0.055)/1.055, 2.4)
		}
	}
	return 0.2126*c[0] + 0.7152*c[1] + 0.0722*c[2]
}

func contrast(t *testing.T, a, b string) float64 {
	la, lb := luminance(t, a), luminance(t, b)
	if la < lb {
		la, lb = lb, la
	}
	return (la + 0.05) / (lb + 0.05)
}

// TestStylesheetContrast reads the embedded stylesheet and checks every
// status badge and every text colour against the backgrounds it is used on
// (WCAG AA: 4.5:1), and that each status has its own badge rule.
func TestStylesheetContrast(t *testing.T) {
	css, err := assets.ReadFile("static/style.css")
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, m := range regexp.MustCompile(`--([a-z-]+):\s*(#[0-9a-fA-F]{6})`).FindAllStringSubmatch(string(css), -1) {
		vars[m[1]] = m[2]
	}
	badges := map[string][2]string{}
	for _, m := range regexp.MustCompile(`\.badge-([a-z_]+)\s*\{\s*color:\s*(#[0-9a-fA-F]{6});\s*background:\s*(#[0-9a-fA-F]{6})`).FindAllStringSubmatch(string(css), -1) {
		badges[m[1]] = [2]string{m[2], m[3]}
	}
	for _, st := range []Status{StatusNeedsAuthorization, StatusPending, StatusAuthorized, StatusExpired, StatusRevoked, StatusError} {
		c, ok := badges[strings.ToLower(string(st))]
		if !ok {
			t.Errorf("no badge rule for %s", st)
			continue
		}
		if r := contrast(t, c[0], c[1]); r < 4.5 {
			t.Errorf("badge %s: contrast %.2f < 4.5", st, r)
		}
		// The badge sits on a card (surface): its outline (text colour, or
		// its filled background) must stand out (non-text: 3:1).
		if r := max(contrast(t, c[0], vars["surface"]), contrast(t, c[1], vars["surface"])); r < 3 {
			t.Errorf("badge %s border against the card: %.2f < 3", st, r)
		}
	}
	seen := map[[2]string]bool{}
	for _, c := range badges {
		if seen[c] {
			t.Errorf("two statuses share colours %v", c)
		}
		seen[c] = true
	}
	for _, p := range [][2]string{
		{"text", "bg"}, {"text", "surface"}, {"muted", "bg"}, {"muted", "surface"}, {"link", "surface"}, {"link", "bg"},
		{"primary-text", "primary"}, {"danger", "surface"}, {"danger", "bg"},
	} {
		if vars[p[0]] == "" || vars[p[1]] == "" {
			t.Fatalf("missing colour variable %v", p)
		}
		if r := contrast(t, vars[p[0]], vars[p[1]]); r < 4.5 {
			t.Errorf("%s on %s: contrast %.2f < 4.5", p[0], p[1], r)
		}
	}
	// Focus outline against both backgrounds (non-text: 3:1).
	for _, bg := range []string{"bg", "surface"} {
		if r := contrast(t, vars["focus"], vars[bg]); r < 3 {
			t.Errorf("focus outline on %s: %.2f < 3", bg, r)
		}
	}
	// Hover colour of primary buttons and the development note.
	for _, p := range [][2]string{{"#ffffff", "#15468f"}, {"#7a4100", "#fff0d6"}} {
		if r := contrast(t, p[0], p[1]); r < 4.5 {
			t.Errorf("%s on %s: %.2f < 4.5", p[0], p[1], r)
		}
	}
	if !strings.Contains(string(css), ":focus-visible") {
		t.Error("no focus style")
	}
}
