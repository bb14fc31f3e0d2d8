/* tests/test_progress.c — cli/progress: the one progress line of the
 * command line (it replaced three hand-written copies). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/progress.h"

Test(progress, bar_fills_in_proportion_and_is_bounded)
{
    char b[32];
    qv_progress_bar(b, sizeof b, 10, 3, 10);
    cr_expect_str_eq(b, "###.......");
    qv_progress_bar(b, sizeof b, 10, 12, 10);
    cr_expect_str_eq(b, "##########");
    qv_progress_bar(b, sizeof b, 10, 5, 0);
    cr_expect_str_eq(b, "..........");
    char small[5];
    qv_progress_bar(small, sizeof small, 20, 1, 2);
    cr_expect_str_eq(small, "##..");
}

/* Off a terminal: whole lines, at most one per interval unless forced, and
 * never the terminal's redraw sequence. */
Test(progress, off_a_terminal_lines_are_whole_and_spaced)
{
    char path[] = "/tmp/qv-progress-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    fflush(stderr);
    int saved = dup(2);
    cr_assert_eq(dup2(fd, 2), 2);
    qv_progress p;
    qv_progress_init(&p, 60.0);
    cr_assert_eq(p.tty, 0);
    qv_progress_line(&p, 0, "step %d", 1);
    qv_progress_line(&p, 0, "step %d", 2); /* within the interval: dropped */
    qv_progress_line(&p, 1, "step %d", 3); /* forced */
    qv_progress_end(&p);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char buf[256] = "";
    FILE *f = fdopen(fd, "r");
    rewind(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    unlink(path);
    cr_expect_str_eq(buf, "step 1\nstep 3\n");
    cr_expect_null(strchr(buf, '\r'));
    cr_expect_null(strchr(buf, '\x1b'));
}
