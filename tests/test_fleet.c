/* tests/test_fleet.c — the fleet's report from stored rows (scheduler/fleet.h):
 * golden Markdown and JSON on fixed data (tests/golden/fleet.*), peer text
 * escaped in every format, the files written, and refusals. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "scheduler/fleet.h"

static qv_fleet_row row(const char *worker, const char *name, const char *dev,
                        const char *backend, double tt, double tf, uint64_t pt,
                        uint64_t pf)
{
    qv_fleet_row f;
    memset(&f, 0, sizeof f);
    snprintf(f.worker, sizeof f.worker, "%s", worker);
    snprintf(f.worker_name, sizeof f.worker_name, "%s", name);
    f.received_ms = 1796386800000;
    qv_bench_result *r = &f.r;
    snprintf(r->device, sizeof r->device, "%s", dev);
    snprintf(r->backend, sizeof r->backend, "%s", backend);
    snprintf(r->vendor, sizeof r->vendor, "Mesa");
    snprintf(r->name, sizeof r->name, "llvmpipe (LLVM 15.0.6, 256 bits)");
    snprintf(r->driver, sizeof r->driver, "22.3.6");
    snprintf(r->fingerprint, sizeof r->fingerprint, "0123456789abcdef");
    snprintf(r->model, sizeof r->model, "builtin");
    snprintf(r->version, sizeof r->version, "0.1.0");
    r->batch = 4, r->seq = 128, r->steps = 6;
    r->mode[0] = (qv_bench_mode){.tokens_per_s = tt, .mfu = 0.25, .gemm_gflops = 16.8,
                                 .peak_bytes = pt, .steps = 6};
    r->mode[1] = (qv_bench_mode){.tokens_per_s = tf, .mfu = 0.324, .gemm_gflops = 11.7,
                                 .peak_bytes = pf, .steps = 6};
    r->mode[0].by_tag[QV_MEM_WEIGHTS] = pt / 4;
    r->mode[0].by_tag[QV_MEM_ACTIVATIONS] = pt - pt / 4;
    r->mode[1].by_tag[QV_MEM_WEIGHTS] = pf - (pt - pt / 4);
    r->mode[1].by_tag[QV_MEM_ACTIVATIONS] = pt - pt / 4;
    r->default_gflops = 8.4;
    r->tuned_vs_default = 2.0;
    r->tune_s = 1.25;
    r->measured_ms = 1796386750000;
    return f;
}

static void fixed(qv_fleet_row rows[3])
{
    rows[0] = row("1", "desk", "opencl:0", "opencl", 5033.0, 5231.4, 33973862, 36805427);
    rows[1] = row("2", "laptop", "vulkan:0", "vulkan", 529.4, 463.6, 33973862, 36805427);
    rows[2] = row("2", "laptop", "vulkan:0", "vulkan", 2.9, 2.2, 707700000, 1900000000);
    snprintf(rows[2].r.model, sizeof rows[2].r.model, "700m");
    rows[2].r.batch = 1;
    rows[2].r.steps = 4;
    rows[2].r.tuned_vs_default = 0;
}

static const qv_fleet_meta META = {.scheduler = "tcp://127.0.0.1:5555",
                                   .generated_ms = 1796390400000};

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    if (b)
        b[n] = 0;
    fclose(f);
    return b;
}

/* Compares with the golden file; QVAC_UPDATE_GOLDEN=1 rewrites it. */
static void golden(const char *name, const char *got)
{
    char path[256];
    snprintf(path, sizeof path, "tests/golden/%s", name);
    if (getenv("QVAC_UPDATE_GOLDEN")) {
        FILE *f = fopen(path, "wb");
        cr_assert_not_null(f, "cannot write %s", path);
        fputs(got, f);
        fclose(f);
    }
    char *want = slurp(path);
    cr_assert_not_null(want, "%s is missing (run the test from the source tree)", path);
    cr_assert_str_eq(got, want, "%s differs from what the report gives", path);
    free(want);
}

Test(fleet, golden_markdown)
{
    qv_fleet_row rows[3];
    fixed(rows);
    char *md = qv_fleet_markdown(rows, 3, &META);
    cr_assert_not_null(md);
    golden("fleet.md", md);
    /* what the figures mean, checked apart from the golden bytes */
    cr_assert_not_null(strstr(md, "| 5033.0 | 5231.4 | 0.96x |"), "%s", md);
    cr_assert_not_null(strstr(md, "| 32.4 MiB | 35.1 MiB | 7.7% |"), "%s", md);
    cr_assert_not_null(strstr(md, "## Model 700m"));
    cr_assert_not_null(strstr(md, "2 workers"));
    free(md);
}

Test(fleet, golden_json)
{
    qv_fleet_row rows[3];
    fixed(rows);
    json_t *j = qv_fleet_json(rows, 3, &META);
    cr_assert_not_null(j);
    char *txt = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    size_t n = strlen(txt);
    txt = realloc(txt, n + 2);
    txt[n] = '\n', txt[n + 1] = 0;
    golden("fleet.json", txt);
    json_t *devs = json_object_get(j, "devices");
    cr_assert_eq(json_array_size(devs), 3);
    json_t *d1 = json_array_get(devs, 1);
    cr_assert_str_eq(json_string_value(json_object_get(d1, "worker_name")), "laptop");
    cr_assert_float_eq(json_real_value(json_object_get(d1, "speedup")), 529.4 / 463.6, 1e-9);
    /* every row reads back as a bench result */
    qv_bench_result r;
    qv_err err = {0};
    cr_assert_eq(qv_bench_from_json(d1, &r, &err), QV_OK, "%s", err.msg);
    free(txt);
    json_decref(j);
}

Test(fleet, peer_text_is_escaped)
{
    qv_fleet_row rows[1];
    rows[0] = row("1", "evil | <script>alert(1)</script>", "opencl:0", "opencl", 1, 1, 1, 2);
    snprintf(rows[0].r.name, sizeof rows[0].r.name, "a|b`c<d>&\"e");
    char *md = qv_fleet_markdown(rows, 1, &META);
    cr_assert_null(strstr(md, "<script>"), "%s", md);
    cr_assert_not_null(strstr(md, "evil \\| &lt;script&gt;"), "%s", md);
    cr_assert_not_null(strstr(md, "a\\|b\\`c&lt;d&gt;"), "%s", md);
    char *svg = qv_fleet_svg(rows, 1, 0);
    cr_assert_null(strstr(svg, "<script>"), "%s", svg);
    cr_assert_not_null(strstr(svg, "&lt;script&gt;"), "%s", svg);
    free(md);
    free(svg);
}

Test(fleet, svg_bars_scale_to_the_largest)
{
    qv_fleet_row rows[3];
    fixed(rows);
    char *svg = qv_fleet_svg(rows, 3, 0);
    cr_assert_not_null(svg);
    cr_assert_eq(strncmp(svg, "<svg ", 5), 0);
    /* the largest value (5231.4 tokens/s) gets the whole plot width: 470 */
    cr_assert_not_null(strstr(svg, "width=\"470.0\""), "%s", svg);
    cr_assert_not_null(strstr(svg, ">5231.4</text>"));
    free(svg);
    svg = qv_fleet_svg(rows, 3, 1);
    cr_assert_not_null(strstr(svg, "MiB"));
    cr_assert_not_null(strstr(svg, ">1812.0</text>"), "1900000000 bytes in MiB: %s", svg);
    free(svg);
}

Test(fleet, writes_the_files_and_refuses_bad_formats)
{
    char dir[] = "/tmp/qvac-test-fleet-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char sub[128], written[2048], p[256];
    snprintf(sub, sizeof sub, "%s/a/b", dir);
    qv_fleet_row rows[3];
    fixed(rows);
    qv_err err = {0};
    cr_assert_eq(qv_fleet_write(rows, 3, &META, sub, NULL, written, sizeof written, &err),
                 QV_OK, "%s", err.msg);
    const char *files[] = {"fleet.md", "fleet.json", "fleet-tokens.svg", "fleet-memory.svg"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", sub, files[i]);
        struct stat st;
        cr_assert_eq(stat(p, &st), 0, "%s", p);
        cr_assert_gt(st.st_size, 100);
        cr_assert_not_null(strstr(written, p), "%s", written);
        unlink(p);
    }
    cr_assert_eq(qv_fleet_write(rows, 3, &META, sub, "json", written, sizeof written, &err),
                 QV_OK);
    snprintf(p, sizeof p, "%s/fleet.md", sub);
    cr_assert_neq(access(p, F_OK), 0, "only json was asked for");
    snprintf(p, sizeof p, "%s/fleet.json", sub);
    cr_assert_eq(access(p, F_OK), 0);
    unlink(p);
    cr_assert_eq(qv_fleet_write(rows, 3, &META, sub, "md,pdf", NULL, 0, &err), QV_ERR_INVALID);
    cr_assert_not_null(strstr(err.msg, "pdf"), "%s", err.msg);
    /* no results: a report that says so */
    char *md = qv_fleet_markdown(NULL, 0, &META);
    cr_assert_not_null(strstr(md, "No results yet"));
    free(md);
    snprintf(p, sizeof p, "%s/a/b", dir);
    rmdir(p);
    snprintf(p, sizeof p, "%s/a", dir);
    rmdir(p);
    rmdir(dir);
}
