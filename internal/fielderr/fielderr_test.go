package fielderr

import (
	"errors"
	"testing"
)

func TestList(t *testing.T) {
	errQuery := errors.New("bad query")
	tests := []struct {
		name string
		fill func(*List)
		want string // "" means Err() is nil
	}{
		{name: "empty", fill: func(*List) {}},
		{name: "add", fill: func(l *List) { l.Add("keys[0].file", "required") }, want: "keys[0].file: required"},
		{name: "addf keeps percent signs of the path", fill: func(l *List) { l.Addf("labels.a%b", "got %d", 3) }, want: "labels.a%b: got 3"},
		{name: "addf with a message holding verbs as an argument", fill: func(l *List) { l.Addf("url", "%s", "100%d") }, want: "url: 100%d"},
		{
			name: "several, in order, with a plain error appended",
			fill: func(l *List) {
				l.Add("a", "one")
				*l = append(*l, errQuery)
				l.Addf("b", "two %q", "x")
			},
			want: "a: one\nbad query\nb: two \"x\"",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l List
			tt.fill(&l)
			err := l.Err()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Err() = %v, want nil", err)
				}
				return
			}
			if err == nil || err.Error() != tt.want {
				t.Fatalf("Err() = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestListKeepsWrappedErrors(t *testing.T) {
	errQuery := errors.New("bad query")
	var l List
	l.Add("x", "y")
	l = append(l, errQuery)
	if !errors.Is(l.Err(), errQuery) {
		t.Fatalf("errors.Is(Err(), errQuery) = false")
	}
}
