package extproc

import "testing"

var decodeSink string

// BenchmarkDecodeString decodes string spans as the filter does for
// tool names and session ids: plain, and with escapes (jsonstr.Append).
func BenchmarkDecodeString(b *testing.B) {
	for _, bc := range []struct{ name, raw string }{
		{"plain", `"get_weather_forecast_for_a_city"`},
		{"escaped", `"get\u005fweather \"forecast\"\n for caf\u00e9 \ud83d\ude00"`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			raw := []byte(bc.raw)
			if end, _, err := scanString(raw, 0); err != nil || end != len(raw) {
				b.Fatalf("scanString: %d, %v", end, err)
			}
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := scanString(raw, 0); err != nil {
					b.Fatal(err)
				}
				s, ok := decodeString(raw)
				if !ok {
					b.Fatal("not decoded")
				}
				decodeSink = s
			}
		})
	}
}
