package main

import (
	"context"
	"errors"
	"io"
)

// cmdDemo is a placeholder until the command lands.
func cmdDemo(context.Context, []string, io.Writer, io.Writer) error {
	return errors.New("not implemented yet")
}
