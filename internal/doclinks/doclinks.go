// Package doclinks finds the relative links of Markdown files and the heading anchors that
// GitHub gives them, so a test can check that every link of the repository's documentation
// points at a file, and a heading, that exist inside the repository.
package doclinks

import (
	"bufio"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"strings"
	"unicode"
)

// Link is one link destination found in a Markdown file.
type Link struct {
	Line int    // 1-based line of the link in its file
	Dest string // the destination as written, e.g. "../README.md#time-model"
}

// Target splits a relative destination into its path and its anchor, both unescaped.
// external is true for destinations that leave the repository by design: a URL with a scheme
// (https:, mailto:, …) or a protocol-relative "//host/…".
func (l Link) Target() (path, anchor string, external bool, err error) {
	dest := l.Dest
	if hasScheme(dest) || strings.HasPrefix(dest, "//") {
		return "", "", true, nil
	}
	path, anchor, _ = strings.Cut(dest, "#")
	path, _, _ = strings.Cut(path, "?")
	if path, err = url.PathUnescape(path); err != nil {
		return "", "", false, fmt.Errorf("bad escape in %q: %w", dest, err)
	}
	if anchor, err = url.PathUnescape(anchor); err != nil {
		return "", "", false, fmt.Errorf("bad escape in %q: %w", dest, err)
	}
	return path, anchor, false, nil
}

var schemeRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:`)

func hasScheme(dest string) bool { return schemeRE.MatchString(dest) }

var (
	// [text](dest) and ![alt](dest), with an optional "title"; dest may be <written in brackets>.
	inlineLinkRE = regexp.MustCompile(`\]\(\s*(<[^>\n]*>|[^()\s]*)(?:\s+(?:"[^"]*"|'[^']*'|\([^)]*\)))?\s*\)`)
	// [label]: dest "title" — a link reference definition, on its own line.
	refDefRE = regexp.MustCompile(`^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)`)
	// <a href="dest"> and <img src="dest">: raw HTML that GitHub renders as links too.
	htmlLinkRE = regexp.MustCompile(`(?i)<(?:a|img)\s[^>]*?\b(?:href|src)\s*=\s*"([^"]*)"`)
	// id="x" or name="x" on any HTML tag: an anchor a link may target.
	htmlAnchorRE = regexp.MustCompile(`(?i)<[a-z][^>]*?\b(?:id|name)\s*=\s*"([^"]+)"`)
	atxHeadingRE = regexp.MustCompile(`^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$`)
	setextRE     = regexp.MustCompile(`^ {0,3}(?:=+|-+)[ \t]*$`)
	fenceRE      = regexp.MustCompile("^ {0,3}(`{3,}|~{3,})")
)

// Parse reads a Markdown file and returns its link destinations (outside code blocks and code
// spans) and the anchors its headings and HTML ids define.
func Parse(r io.Reader) (links []Link, anchors map[string]bool, err error) {
	anchors = map[string]bool{}
	slugs := map[string]int{} // GitHub numbers repeated headings: x, x-1, x-2
	addHeading := func(text string) {
		s := Slug(text)
		n := slugs[s]
		slugs[s]++
		if n > 0 {
			s = fmt.Sprintf("%s-%d", s, n)
		}
		anchors[s] = true
	}

	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	var (
		fence    string // the opening fence of the code block we are in, if any
		prevText string // the previous line, when it may be a setext heading's text
		lineNo   int
	)
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		if fence != "" { // inside a fenced code block: only its closing fence matters
			// The closing fence: the same character, at least as many, nothing after it.
			if m := fenceRE.FindStringSubmatch(line); len(m) == 2 && m[1][0] == fence[0] && len(m[1]) >= len(fence) &&
				strings.TrimSpace(strings.TrimLeft(line, " "+m[1][:1])) == "" {
				fence = ""
			}
			continue
		}
		if m := fenceRE.FindStringSubmatch(line); m != nil {
			fence, prevText = m[1], ""
			continue
		}
		trimmed := strings.TrimSpace(line)
		switch m := atxHeadingRE.FindStringSubmatch(line); {
		case m != nil:
			addHeading(m[2])
			prevText = ""
		case setextRE.MatchString(line) && prevText != "": // the underline of "Heading\n======="
			addHeading(prevText)
			prevText = ""
		case trimmed == "" || strings.HasPrefix(trimmed, "|"): // no heading text: a blank line, a table row
			prevText = ""
		default:
			prevText = line
		}

		for _, m := range htmlAnchorRE.FindAllStringSubmatch(line, -1) {
			anchors[strings.ToLower(m[1])] = true
		}

		text := blankCodeSpans(line)
		for _, m := range inlineLinkRE.FindAllStringSubmatch(text, -1) {
			links = append(links, Link{Line: lineNo, Dest: strings.Trim(m[1], "<>")})
		}
		// "[comment]: <> (text)", an empty definition, is the usual way to write a comment.
		if m := refDefRE.FindStringSubmatch(text); len(m) == 2 && m[1] != "<>" {
			links = append(links, Link{Line: lineNo, Dest: strings.Trim(m[1], "<>")})
		}
		for _, m := range htmlLinkRE.FindAllStringSubmatch(text, -1) {
			links = append(links, Link{Line: lineNo, Dest: m[1]})
		}
	}
	return links, anchors, sc.Err()
}

// blankCodeSpans replaces the contents of `code spans` by spaces, so a link shown as code is
// not taken for a link, while a link whose text is code ([`x`](dest)) still is.
func blankCodeSpans(line string) string {
	b := []byte(line)
	for i := 0; i < len(b); {
		if b[i] != '`' {
			i++
			continue
		}
		n := 0
		for i+n < len(b) && b[i+n] == '`' {
			n++
		}
		ticks := strings.Repeat("`", n)
		end := strings.Index(string(b[i+n:]), ticks)
		if end < 0 {
			i += n
			continue
		}
		for j := i + n; j < i+n+end; j++ {
			b[j] = ' '
		}
		i += 2*n + end
	}
	return string(b)
}

var (
	inlineLinkTextRE = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)
	htmlTagRE        = regexp.MustCompile(`<[^>]+>`)
)

// Slug is the anchor GitHub gives a heading: the heading's rendered text in lower case, with
// every character but letters, digits, spaces, hyphens and underscores removed and each space
// made a hyphen. Repeated headings get -1, -2, … appended (see Parse).
func Slug(heading string) string {
	text := inlineLinkTextRE.ReplaceAllString(heading, "$1") // a link's text stays
	text = htmlTagRE.ReplaceAllString(text, "")
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(text)) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r):
			b.WriteRune(r)
		}
	}
	return b.String()
}
