//go:build !race

package entrycache

const raceEnabled = false
