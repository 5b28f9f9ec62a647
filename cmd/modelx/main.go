// Command modelx is the command line of a modelx registry: it pushes,
// pulls and copies models, and lists, inspects, tags, holds, deletes and
// garbage-collects them.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.opentelemetry.io/otel"

	"modelx.io/modelx/internal/telemetry"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	shutdown, err := telemetry.Setup(ctx, "modelx")
	if err != nil {
		fmt.Fprintln(os.Stderr, "modelx: tracing:", err)
		os.Exit(1)
	}
	// One span for the whole command: its registry requests are its
	// children, and continue on the registry's side.
	ctx, span := otel.Tracer("modelx.io/modelx/cmd/modelx").Start(ctx, "modelx "+strings.Join(commandWords(os.Args[1:]), " "))
	err = newRootCommand(os.Stdin, os.Stdout, os.Stderr).ExecuteContext(ctx)
	span.End()
	flushCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = shutdown(flushCtx)
	cancel()
	stop()
	if err != nil {
		if errors.Is(err, context.Canceled) {
			err = errors.New("interrupted; run the same command again to resume")
		}
		fmt.Fprintln(os.Stderr, "modelx:", err)
		os.Exit(1)
	}
}

// commandWords are the subcommand names at the start of args: the span
// name, without references or paths, which may be long or private.
func commandWords(args []string) []string {
	var words []string
	for _, a := range args {
		if strings.HasPrefix(a, "-") || strings.ContainsAny(a, "/:.@") || len(words) == 2 {
			break
		}
		words = append(words, a)
	}
	return words
}
