package main

import (
	"context"
	"errors"
	"io"
)

// cmdDevIDP is a placeholder until the command lands.
func cmdDevIDP(context.Context, []string, io.Writer, io.Writer) error {
	return errors.New("not implemented yet")
}

// cmdDemoMCP is a placeholder until the command lands.
func cmdDemoMCP(context.Context, []string, io.Writer, io.Writer) error {
	return errors.New("not implemented yet")
}
