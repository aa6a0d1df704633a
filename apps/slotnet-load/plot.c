/*
 * The timeline as a picture: a gnuplot script next to the CSV, run with
 * posix_spawnp (no shell, so no quoting of file names for one), rendered
 * to PNG (pngcairo) and SVG. No gnuplot: say so, and carry on.
 */
#include <errno.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>

#include "load.h"

extern char **environ;

/* A gnuplot single-quoted string: no escapes but '' for a quote. */
static void quoted(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'')
            fputc('\'', f);
        fputc(*s, f);
    }
    fputc('\'', f);
}

static bool has_uploads(const struct result *r)
{
    for (unsigned i = 0; i < r->sc->ngroups; i++)
        if (r->sc->groups[i].type == G_UPLOADER)
            return true;
    return false;
}

static void plot_body(FILE *f, const char *csv, const struct result *r, bool slots)
{
    double tmax = r->nrows ? r->rows[r->nrows - 1].t : 1.0;
    bool up = has_uploads(r);
    bool pages = r->browsers > 0;
    fprintf(f, "set multiplot layout %d,1 title ", (slots ? 3 : 2) + (pages ? 1 : 0));
    char title[256];
    snprintf(title, sizeof title, "slotnet-load: %s against %s", r->sc->name, r->target);
    quoted(f, title);
    fprintf(f, "\nset grid\nset key outside right top\nset xlabel 'time (s)'\n"
               "set xrange [0:%.2f]\nset lmargin 10\nset rmargin 30\n",
            tmax > 0 ? tmax : 1.0);
    /* The end of the timed run: what follows is the drain and the final check. */
    fprintf(f, "set arrow 1 from %.2f, graph 0 to %.2f, graph 1 nohead front dt 2 lc rgb '#555555'\n",
            r->run_s, r->run_s);
    /* The moments the slow-link scenarios are about. */
    if (r->all_served_s >= 0)
        fprintf(f, "set arrow 2 from %.2f, graph 0 to %.2f, graph 1 nohead front lw 2 "
                   "lc rgb '#2ca02c'\n",
                r->all_served_s, r->all_served_s);
    if (r->bh_cut)
        fprintf(f, "set arrow 3 from %.2f, graph 0 to %.2f, graph 1 nohead front lw 2 "
                   "lc rgb '#000000'\n",
                r->bh_cut_s, r->bh_cut_s);
    if (r->bh_cp_seen_s >= 0 && r->bh_reset_seen)
        fprintf(f, "set arrow 4 from %.2f, graph 0 to %.2f, graph 1 nohead front lw 2 dt 3 "
                   "lc rgb '#d62728'\n",
                r->bh_cp_seen_s + r->bh_close_ms / 1000.0,
                r->bh_cp_seen_s + r->bh_close_ms / 1000.0);
    if (slots) {
        unsigned n = r->final.nslots;
        for (size_t i = 0; i < r->nrows && n == 0; i++)
            if (r->rows[i].st.valid)
                n = r->rows[i].st.nslots;
        fprintf(f, "set ylabel 'slots'\nset yrange [0:%u]\nset ytics 1\n"
                   "set style fill solid 0.85 noborder\n",
                n ? n : 8);
        /* Stacked from the bottom: each curve is the sum of the states
         * below it, drawn tallest first so the shorter ones sit on top. */
        fprintf(f, "plot ");
        quoted(f, csv);
        fprintf(f, " using 1:($8+$9+$10+$11+$12+$7) with filledcurves x1 lc rgb '#e8e8e8' "
                   "title 'free', \\\n"
                   "  '' using 1:($8+$9+$10+$11+$12) with filledcurves x1 lc rgb '#bbbbbb' "
                   "title 'this /status', \\\n"
                   "  '' using 1:($8+$9+$10+$11) with filledcurves x1 lc rgb '#9467bd' "
                   "title 'other', \\\n"
                   "  '' using 1:($8+$9+$10) with filledcurves x1 lc rgb '#ff7f0e' "
                   "title 'close-pending', \\\n"
                   "  '' using 1:($8+$9) with filledcurves x1 lc rgb '#d62728' "
                   "title 'other-end-closed', \\\n"
                   "  '' using 1:8 with filledcurves x1 lc rgb '#1f77b4' title 'connected'\n");
        fprintf(f, "set yrange [*:*]\nset ytics autofreq\n");
    }
    fprintf(f, "set ylabel 'per second'\nset yrange [0:*]\n");
    if (up)
        fprintf(f, "set y2label 'upload MB/s'\nset y2tics\nset y2range [0:*]\n");
    fprintf(f, "plot ");
    quoted(f, csv);
    fprintf(f, " using 1:2 with lines lw 1.5 lc rgb '#1f77b4' title 'requests/s', \\\n"
               "  '' using 1:3 with lines lw 1.5 lc rgb '#2ca02c' title 'connections/s', \\\n");
    if (up)
        fprintf(f, "  '' using 1:5 axes x1y2 with lines lw 1.5 lc rgb '#d62728' "
                   "title 'upload MB/s', \\\n");
    fprintf(f, "  '' using 1:($4 / %.2f) with impulses lw 2 lc rgb '#000000' title 'failures/s'\n",
            (double)TICK_US / 1e6);
    /* Where the pollers waited: spikes line up with whatever stalled the server. */
    fprintf(f, "unset y2tics\nunset y2label\nset ylabel 'slowest request (ms)'\n"
               "set yrange [0:*]\nplot ");
    quoted(f, csv);
    fprintf(f, " using 1:14 with impulses lw 2 lc rgb '#1f77b4' "
               "title 'slowest poll/API request'\n");
    if (pages) {
        /* The page loads: browsers served, and what the link delivered. */
        fprintf(f, "set ylabel 'browsers served'\nset yrange [0:%u]\n"
                   "set y2label 'received kB/s'\nset y2tics\nset y2range [0:*]\nplot ",
                r->browsers + 1);
        quoted(f, csv);
        fprintf(f, " using 1:16 with steps lw 2 lc rgb '#2ca02c' title 'browsers served', \\\n"
                   "  '' using 1:15 axes x1y2 with lines lw 1 lc rgb '#ff7f0e' "
                   "title 'received kB/s'\n");
        fprintf(f, "unset y2tics\nunset y2label\n");
    }
    fprintf(f, "unset multiplot\nunset arrow 1\nunset arrow 2\nunset arrow 3\nunset arrow 4\n");
}

bool report_plot(const char *prefix, const char *csv, const struct result *r)
{
    char gp[4096], png[4096], svg[4096];
    if ((size_t)snprintf(gp, sizeof gp, "%s.gp", prefix) >= sizeof gp ||
        (size_t)snprintf(png, sizeof png, "%s.png", prefix) >= sizeof png ||
        (size_t)snprintf(svg, sizeof svg, "%s.svg", prefix) >= sizeof svg) {
        fprintf(stderr, PROG ": --plot: name too long\n");
        return false;
    }
    bool slots = false;
    for (size_t i = 0; i < r->nrows && !slots; i++)
        slots = r->rows[i].st.valid;

    FILE *f = fopen(gp, "w");
    if (!f) {
        fprintf(stderr, PROG ": %s: %s\n", gp, strerror(errno));
        return false;
    }
    fprintf(f, "# Written by " PROG "; run: gnuplot %s\n", gp);
    fprintf(f, "set datafile separator ','\nset key autotitle columnhead\n");
    int height = (slots ? 1050 : 700) + (r->browsers ? 330 : 0);
    fprintf(f, "set terminal pngcairo size 1200,%d font 'sans,10'\nset output ", height);
    quoted(f, png);
    fputc('\n', f);
    plot_body(f, csv, r, slots);
    fprintf(f, "set output\nset terminal svg size 1200,%d dynamic font 'sans,10'\nset output ",
            height);
    quoted(f, svg);
    fputc('\n', f);
    plot_body(f, csv, r, slots);
    fprintf(f, "set output\n");
    bool ok = !ferror(f);
    if (fclose(f) != 0 || !ok) {
        fprintf(stderr, PROG ": %s: write error\n", gp);
        return false;
    }

    pid_t pid;
    char *argv[] = {"gnuplot", gp, NULL};
    int err = posix_spawnp(&pid, "gnuplot", NULL, NULL, argv, environ);
    if (err == ENOENT) {
        fprintf(stderr, PROG ": gnuplot not found (Debian: gnuplot-nox); plot skipped, "
                        "script left in %s\n",
                gp);
        return true;
    }
    if (err != 0) {
        fprintf(stderr, PROG ": cannot run gnuplot: %s\n", strerror(err));
        return false;
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            fprintf(stderr, PROG ": waiting for gnuplot: %s\n", strerror(errno));
            return false;
        }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, PROG ": gnuplot failed on %s\n", gp);
        return false;
    }
    fprintf(stderr, PROG ": plot written to %s and %s\n", png, svg);
    return true;
}
