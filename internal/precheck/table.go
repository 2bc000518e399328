package precheck

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// tableWidth is the line width WriteTable wraps the found and advice text to.
const tableWidth = 120

// WriteTable writes the report for a terminal: one row per check with its side, name,
// result and what was found, the advice on the lines below marked "→", then a summary.
// Warnings and failures are in capitals so they stand out without colour.
func (r *Report) WriteTable(w io.Writer) error {
	nameW := len("CHECK")
	for _, c := range r.Checks {
		nameW = max(nameW, utf8.RuneCountInString(c.Name))
	}
	const sideW, resW = len("source"), len("RESULT")
	indent := strings.Repeat(" ", sideW+2+nameW+2+resW+2)
	textW := max(40, tableWidth-len(indent))

	var b strings.Builder
	fmt.Fprintf(&b, "%-*s  %-*s  %-*s  %s\n", sideW, "SIDE", nameW, "CHECK", resW, "RESULT", "FOUND")
	for _, c := range r.Checks {
		res := c.Result.String()
		if c.Result >= Warn {
			res = strings.ToUpper(res)
		}
		lines := wrap(c.Found, textW)
		fmt.Fprintf(&b, "%-*s  %-*s  %-*s  %s\n", sideW, c.Side, nameW, c.Name, resW, res, lines[0])
		for _, l := range lines[1:] {
			b.WriteString(indent + l + "\n")
		}
		if c.Advice != "" {
			for i, l := range wrap(c.Advice, textW-2) {
				if i == 0 {
					b.WriteString(indent + "→ " + l + "\n")
				} else {
					b.WriteString(indent + "  " + l + "\n")
				}
			}
		}
	}
	fmt.Fprintf(&b, "\n%d checks in %.1f s: %d pass, %d skip, %d warn, %d fail → %s\n",
		len(r.Checks), float64(r.ElapsedMS)/1000, r.Count(Pass), r.Count(Skip), r.Count(Warn), r.Count(Fail), r.verdict())
	_, err := io.WriteString(w, b.String())
	return err
}

func (r *Report) verdict() string {
	switch r.Worst() {
	case Fail:
		return "FAIL: fix what the failed checks advise (→) before syncing"
	case Warn:
		return "WARN: read the warnings; a sync starts only with --accept-warnings"
	}
	return "ready to sync"
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// wrap splits text into lines of at most width runes at spaces (a longer word gets a
// line of its own). It always returns at least one line.
func wrap(text string, width int) []string {
	var lines []string
	var cur strings.Builder
	n := 0
	for _, word := range strings.Fields(text) {
		wl := utf8.RuneCountInString(word)
		if n > 0 && n+1+wl > width {
			lines = append(lines, cur.String())
			cur.Reset()
			n = 0
		}
		if n > 0 {
			cur.WriteByte(' ')
			n++
		}
		cur.WriteString(word)
		n += wl
	}
	return append(lines, cur.String())
}
