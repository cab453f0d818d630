package main

// The statistics of the runs and the Markdown table they are reported in.

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func pooled(runs []run) []time.Duration {
	var all []time.Duration
	for _, r := range runs {
		all = append(all, r.lats...)
	}
	return all
}

// table collects the rows of the result and prints them as Markdown.
type table struct {
	head   []string
	rows   [][]string
	missed []string
}

func (t *table) header(o options) {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	t.head = append(t.head,
		fmt.Sprintf("cbkgate benchmark, %s, %s/%s, %d CPUs (%s), %s", time.Now().UTC().Format("2006-01-02 15:04 MST"),
			runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), model, runtime.Version()),
		fmt.Sprintf("Create pairs: %d rounds of %s per side; List pair: %d rounds; concurrency %d; List %s tokens; memory %s tokens; medians over rounds",
			o.rounds, o.duration, o.listRounds, o.conc, count(o.listTokens), count(o.memTokens)),
	)
}

func (t *table) row(name, cbk, direct, rel, target string, ok bool) {
	verdict := ""
	if target != "" {
		verdict = "met"
		if !ok {
			verdict = "**not met**"
			t.missed = append(t.missed, name)
		}
	}
	t.rows = append(t.rows, []string{name, cbk, direct, rel, target, verdict})
}

// ratioRow: median throughput of each side and the median of the per-round
// ratios.
func (t *table) ratioRow(name string, p pairRuns, target string, min float64) {
	var ra, rb, ratio []float64
	for i := range p.a {
		ra = append(ra, p.a[i].perSecond())
		rb = append(rb, p.b[i].perSecond())
		ratio = append(ratio, p.a[i].perSecond()/p.b[i].perSecond())
	}
	r := median(ratio)
	t.row(name, count(int(median(ra)))+"/s", count(int(median(rb)))+"/s", fmt.Sprintf("%.2f", r), target, r >= min)
}

// latencyRows: p50 is the median over rounds of each round's p50, and what
// cbkgate adds the median of the rounds' differences, so that a noisy
// moment weighs on one round only; p99 is over every call of every round.
func (t *table) latencyRows(name string, p pairRuns, maxAdded time.Duration) {
	var pa, pb, added []float64
	for i := range p.a {
		a, b := percentile(p.a[i].lats, 50), percentile(p.b[i].lats, 50)
		pa, pb, added = append(pa, float64(a)), append(pb, float64(b)), append(added, float64(a-b))
	}
	a50, b50, add50 := time.Duration(median(pa)), time.Duration(median(pb)), time.Duration(median(added))
	target := ""
	if maxAdded > 0 {
		target = "≤ " + micros(maxAdded)
	}
	t.row(name+", p50 latency", micros(a50), micros(b50), "+"+micros(add50), target, add50 <= maxAdded)
	a99, b99 := percentile(pooled(p.a), 99), percentile(pooled(p.b), 99)
	t.row(name+", p99 latency", micros(a99), micros(b99), "+"+micros(a99-b99), "", true)
}

func (t *table) cpuRow(name string, cpu time.Duration, n int) {
	per := "n/a"
	if n > 0 {
		if d := cpu / time.Duration(n); d >= 10*time.Microsecond {
			per = micros(d)
		} else {
			per = fmt.Sprintf("%.2f µs", float64(cpu)/float64(n)/1e3)
		}
	}
	t.row(name, per, "", "", "", true)
}

func (t *table) print(f *os.File) {
	for _, h := range t.head {
		fmt.Fprintln(f, h)
		fmt.Fprintln(f)
	}
	fmt.Fprintln(f, "| measurement | cbkgate | direct | ratio / added | target | |")
	fmt.Fprintln(f, "| --- | ---: | ---: | ---: | --- | --- |")
	for _, r := range t.rows {
		fmt.Fprintln(f, "| "+strings.Join(r, " | ")+" |")
	}
	fmt.Fprintln(f)
	if len(t.missed) == 0 {
		fmt.Fprintln(f, "Every target met.")
	} else {
		fmt.Fprintf(f, "Targets not met: %s.\n", strings.Join(t.missed, "; "))
	}
}

func micros(d time.Duration) string {
	return fmt.Sprintf("%d µs", d.Round(time.Microsecond).Microseconds())
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// count formats n with thousands separators.
func count(n int) string {
	s := fmt.Sprint(n)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 && s[0] != '-' {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}
