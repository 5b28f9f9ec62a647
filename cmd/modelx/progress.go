package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"golang.org/x/term"

	"modelx.io/modelx/client"
	"modelx.io/modelx/client/credentials"
)

// How often progress is shown: redrawn on a terminal, a line otherwise.
const (
	redrawEvery = 200 * time.Millisecond
	lineEvery   = 5 * time.Second
)

// progress returns how the transfers of op (push, pull, copy) are shown:
// bars on a terminal, a line every few seconds otherwise, nothing with
// -q. Either ends with a summary line (stopProgress).
func (a *app) progress(op string) client.Progress {
	if a.quiet {
		return nil
	}
	d := newProgressDisplay(a.stderr, op, time.Now)
	a.stop = d.stop
	return d
}

// newTransferClient is newClient with the progress of op.
func (a *app) newTransferClient(cfg *credentials.Config, op string) *client.Client {
	return a.clientWith(cfg, a.progress(op))
}

// stopProgress ends the progress display with the command's outcome: err
// nil for success; ctx done means interrupted.
// On success, moved and skipped are the result's figures, which the
// summary shows.
func (a *app) stopProgress(ctx context.Context, err error, moved, skipped int64) {
	if a.stop != nil {
		a.stop(err, ctx.Err() != nil || errors.Is(err, context.Canceled), moved, skipped)
		a.stop = nil
	}
}

// progressDisplay shows a progressModel on a writer: on a terminal, a
// block of lines redrawn in place (the total, then the files in flight);
// otherwise a status line every lineEvery. Nothing is shown before the
// first event, and the summary only for an operation that planned.
type progressDisplay struct {
	*progressModel
	out  io.Writer
	tty  bool
	size func() (width, height int) // of the terminal

	begin      sync.Once
	started    bool // the loop runs; set once, within begin
	quit, done chan struct{}
	drawn      int // lines of the block on screen (terminal)
}

func newProgressDisplay(out io.Writer, op string, now func() time.Time) *progressDisplay {
	d := &progressDisplay{progressModel: newProgressModel(op, now), out: out, size: func() (int, int) { return 80, 24 },
		quit: make(chan struct{}), done: make(chan struct{})}
	if f, ok := out.(*os.File); ok && isTerminal(out) {
		d.tty = true
		d.size = func() (int, int) {
			if w, h, err := term.GetSize(int(f.Fd())); err == nil && w > 0 && h > 0 {
				return w, h
			}
			return 80, 24
		}
	}
	return d
}

// block is what a terminal shows of f: its lines, no more of them than
// fit on the screen (the cursor cannot go back above its top).
func (d *progressDisplay) block(f progressFrame) []string {
	width, height := d.size()
	lines := ttyLines(f, width)
	return lines[:min(len(lines), max(1, height-1))]
}

// Plan adds to the plan and starts showing (client.Progress).
func (d *progressDisplay) Plan(total, present int64) {
	d.progressModel.Plan(total, present)
	d.begin.Do(d.start)
}

// Start begins a file's line and starts showing (client.Progress).
func (d *progressDisplay) Start(name string, size int64) client.Tracker {
	d.begin.Do(d.start)
	return d.progressModel.Start(name, size)
}

func (d *progressDisplay) start() {
	d.started = true
	go d.loop()
}

func (d *progressDisplay) loop() {
	defer close(d.done)
	every := lineEvery
	if d.tty {
		every = redrawEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-d.quit:
			return
		case <-t.C:
			f := d.Frame()
			if d.tty {
				d.draw(d.block(f))
			} else if f.Planned {
				fmt.Fprintln(d.out, statusLine(f))
			}
		}
	}
}

// draw replaces the block on screen with lines: back to its first line,
// each line cleared and written, and whatever was below (a shorter
// block's rest, an echoed ^C) erased.
func (d *progressDisplay) draw(lines []string) {
	var b bytes.Buffer
	b.WriteString("\r")
	if d.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", d.drawn)
	}
	for _, l := range lines {
		b.WriteString("\x1b[2K")
		b.WriteString(l)
		b.WriteString("\n")
	}
	b.WriteString("\x1b[J")
	d.out.Write(b.Bytes())
	d.drawn = len(lines)
}

// stop ends the display: the last frame shows what was really done (the
// fraction at an interruption, not a full bar), then the summary.
func (d *progressDisplay) stop(err error, wasInterrupted bool, moved, skipped int64) {
	d.begin.Do(func() {}) // no loop starts after this
	if d.started {
		close(d.quit)
		<-d.done
	}
	f := d.Finish(err, wasInterrupted).settle(moved, skipped)
	switch {
	case !f.Planned:
		if d.drawn > 0 {
			d.draw(nil)
		}
	case d.tty:
		// The summary is the last line drawn: it may wrap.
		d.draw([]string{d.block(f)[0], summaryLine(f)})
	default:
		fmt.Fprintln(d.out, summaryLine(f))
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
