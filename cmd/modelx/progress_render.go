package main

import (
	"fmt"
	"strings"
	"time"

	"modelx.io/modelx/internal/humanize"
)

// maxFileLines is how many files in flight a terminal shows; the rest are
// counted on one more line.
const maxFileLines = 8

// barCells is the width of a bar, in cells: less on a narrow terminal.
func barCells(width int) int {
	if width < 100 {
		return 10
	}
	return 20
}

// opWords name an operation and its moved and skipped bytes.
func opWords(op string) (name, moved, skipped string) {
	switch op {
	case "push":
		return "push", "uploaded", "skipped"
	case "pull":
		return "pull", "downloaded", "skipped"
	case "copy":
		return "copy", "copied", "mounted"
	}
	return "transfer", "moved", "skipped"
}

// ttyLines renders a frame for a terminal width columns wide: the total,
// then one line per file in flight; each line fits in width-1 columns,
// so none wraps.
func ttyLines(f progressFrame, width int) []string {
	name, _, _ := opWords(f.Op)
	cells := barCells(width)
	total := fmt.Sprintf("%s %s %3.0f%%  %s of %s", name, bar(f.Fraction(), cells), 100*f.Fraction(), humanize.Bytes(f.Done()), humanize.Bytes(f.Total))
	if f.Outcome == running {
		total += "  " + rate(f.Rate, f.RateKnown) + "  ETA " + eta(f)
	}
	total += notes(f, "present")
	lines := []string{total}
	// A file line is 46 columns and a bar besides its name (at most).
	nameWidth := max(12, min(40, width-cells-46))
	for i, ff := range f.Files {
		if i == maxFileLines {
			lines = append(lines, fmt.Sprintf("  … and %d more files", len(f.Files)-maxFileLines))
			break
		}
		fraction := 1.0
		if ff.Size > 0 {
			fraction = min(1, max(0, float64(ff.Moved+ff.Skipped)/float64(ff.Size)))
		}
		lines = append(lines, fmt.Sprintf("  %s %s %3.0f%%  %9s / %-9s  %s",
			fit(ff.Name, nameWidth), bar(fraction, cells), 100*fraction, humanize.Bytes(ff.Moved+ff.Skipped), humanize.Bytes(ff.Size), rate(ff.Rate, ff.RateKnown)))
	}
	for i, l := range lines {
		lines[i] = clip(l, width-1)
	}
	return lines
}

// statusLine renders a frame as one line for logs: for output that is
// not a terminal, printed every few seconds.
func statusLine(f progressFrame) string {
	name, _, _ := opWords(f.Op)
	s := fmt.Sprintf("%s: %.0f%% %s of %s", name, 100*f.Fraction(), humanize.Bytes(f.Done()), humanize.Bytes(f.Total))
	s += notes(f, "already present")
	s += ", " + rate(f.Rate, f.RateKnown) + ", ETA " + eta(f)
	if n := len(f.Files); n > 0 {
		s += fmt.Sprintf(", %d %s in flight", n, humanize.Plural(n, "file", "files"))
	}
	return s
}

// summaryLine is the last line of an operation: how it ended, and the
// true figures (bytes moved and skipped, which equal its result's, the
// time it took, and the average rate).
func summaryLine(f progressFrame) string {
	name, moved, skipped := opWords(f.Op)
	var s string
	switch f.Outcome {
	case succeeded:
		s = name + " done"
	case interrupted:
		s = fmt.Sprintf("%s interrupted at %.0f%%", name, 100*f.Fraction())
	default:
		s = fmt.Sprintf("%s failed at %.0f%%", name, 100*f.Fraction())
	}
	s += fmt.Sprintf(": %s of %s in %s; %s %s, %s %s", humanize.Bytes(f.Done()), humanize.Bytes(f.Total), duration(f.Elapsed),
		moved, humanize.Bytes(f.Moved), skipped, humanize.Bytes(f.Skipped+f.Present))
	if f.Present > 0 {
		s += fmt.Sprintf(" (%s already present)", humanize.Bytes(f.Present))
	}
	if f.Repeated > 0 {
		s += fmt.Sprintf(", %s repeated content moved once", humanize.Bytes(f.Repeated))
	}
	return s + fmt.Sprintf("; %s/s average", humanize.Bytes(int64(f.AverageRate())))
}

// notes adds the skipped and present bytes to a total, the latter called
// present.
func notes(f progressFrame, present string) string {
	_, _, skipped := opWords(f.Op)
	var parts []string
	if f.Skipped > 0 {
		parts = append(parts, humanize.Bytes(f.Skipped)+" "+skipped)
	}
	if f.Present > 0 {
		parts = append(parts, humanize.Bytes(f.Present)+" "+present)
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func bar(fraction float64, cells int) string {
	full := int(fraction*float64(cells) + 0.5)
	if full == cells && fraction < 1 {
		full-- // only a finished bar is full
	}
	return strings.Repeat("█", full) + strings.Repeat("░", cells-full)
}

func rate(r float64, known bool) string {
	if !known {
		return "--/s"
	}
	return humanize.Bytes(int64(r)) + "/s"
}

func eta(f progressFrame) string {
	if !f.ETAKnown {
		return "--"
	}
	return duration(f.ETA)
}

// duration formats a duration for people: 0.4s, 12s, 3m05s, 2h07m.
func duration(d time.Duration) string {
	switch {
	case d < 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}

// fit pads or shortens a name to exactly width columns, keeping its end
// (the file name) when it is too long.
func fit(name string, width int) string {
	if n := columns(name); n <= width {
		return name + strings.Repeat(" ", width-n)
	}
	r := []rune(name)
	w, i := 1, len(r) // "…"
	for i > 0 && w+runeColumns(r[i-1]) <= width {
		i--
		w += runeColumns(r[i])
	}
	return "…" + string(r[i:]) + strings.Repeat(" ", width-w)
}

// clip cuts a line to at most width columns.
func clip(line string, width int) string {
	if width <= 0 || columns(line) <= width {
		return line
	}
	w := 0
	for i, r := range line {
		if w += runeColumns(r); w > width {
			return line[:i]
		}
	}
	return line
}

// columns is how many terminal columns s takes.
func columns(s string) int {
	n := 0
	for _, r := range s {
		n += runeColumns(r)
	}
	return n
}

// runeColumns is how many columns a terminal gives r: two for the wide
// East Asian scripts and emoji, one otherwise (an overestimate for
// combining marks, which only shortens a line).
func runeColumns(r rune) int {
	switch {
	case r >= 0x1100 && r <= 0x115f, r >= 0x2e80 && r <= 0xa4cf && r != 0x303f,
		r >= 0xac00 && r <= 0xd7a3, r >= 0xf900 && r <= 0xfaff, r >= 0xfe30 && r <= 0xfe4f,
		r >= 0xff00 && r <= 0xff60, r >= 0xffe0 && r <= 0xffe6,
		r >= 0x1f300 && r <= 0x1f64f, r >= 0x1f900 && r <= 0x1f9ff, r >= 0x20000 && r <= 0x3fffd:
		return 2
	}
	return 1
}
