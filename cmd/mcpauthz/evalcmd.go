package main

import (
	"context"
	"errors"
	"io"
)

// cmdEval is a placeholder until the command lands.
func cmdEval(context.Context, []string, io.Writer, io.Writer) error {
	return errors.New("not implemented yet")
}
