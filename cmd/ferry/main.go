// Command ferry keeps a Redis-protocol destination identical to a source.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/ferrysync/ferry/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
