// Package suggest finds what a user probably meant when a name (a flag, a command, a config
// key) is not known: the nearest candidates by edit distance.
package suggest

import "strings"

// Closest returns the candidates nearest to typed, case-insensitively: those within a third
// of typed's length in edits (at least 1, at most 3), best first, ties in the given order.
// typed itself is no suggestion; the same name in other case is the best one.
func Closest(typed string, candidates []string) []string {
	t := strings.ToLower(typed)
	limit := min(max(len([]rune(t))/3, 1), 3)
	best := limit + 1
	var out []string
	for _, c := range candidates {
		d := Distance(t, strings.ToLower(c))
		switch {
		case c == typed || d > limit:
		case d < best:
			best, out = d, []string{c}
		case d == best:
			out = append(out, c)
		}
	}
	return out
}

// Distance is the Damerau-Levenshtein distance (optimal string alignment) between a and b in
// runes: insertions, deletions, substitutions and swaps of two neighbours each cost one, so
// "detatch" is one edit from "detach" and "biuld" one from "build".
func Distance(a, b string) int {
	r, s := []rune(a), []rune(b)
	// Three rows of the dynamic-programming table: i-2, i-1, i.
	prev2 := make([]int, len(s)+1)
	prev := make([]int, len(s)+1)
	cur := make([]int, len(s)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(r); i++ {
		cur[0] = i
		for j := 1; j <= len(s); j++ {
			cost := 1
			if r[i-1] == s[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && r[i-1] == s[j-2] && r[i-2] == s[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(s)]
}

// Phrase is " did you mean X?" (or "X or Y?") for the suggestions, quoted by q; empty for none.
func Phrase(suggestions []string, q func(string) string) string {
	if len(suggestions) == 0 {
		return ""
	}
	words := make([]string, len(suggestions))
	for i, s := range suggestions {
		words[i] = q(s)
	}
	if len(words) == 1 {
		return "did you mean " + words[0] + "?"
	}
	return "did you mean " + strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1] + "?"
}
