package main

import (
	"context"
	"errors"
	"io"
)

// cmdEnvoy is a placeholder until the command lands.
func cmdEnvoy(context.Context, []string, io.Writer, io.Writer) error {
	return errors.New("not implemented yet")
}
