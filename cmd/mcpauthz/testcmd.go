package main

import (
	"context"
	"errors"
	"io"
)

// cmdTest is a placeholder until the command lands.
func cmdTest(context.Context, []string, io.Writer, io.Writer) error {
	return errors.New("not implemented yet")
}
