/* scheduler/fleet.c — the fleet's report (scheduler/fleet.h). */
#include "scheduler/fleet.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/file.h"
#include "common/sbuf.h"

/* Markdown table cell: no |, \, `, <, > or line breaks from a peer. */
static void md_text(qv_sbuf *s, const char *v)
{
    for (; *v; v++) {
        unsigned char c = (unsigned char)*v;
        if (c == '|' || c == '\\' || c == '`' || c == '*' || c == '_' || c == '[' ||
            c == ']')
            qv_sbuf_printf(s, "\\%c", c);
        else if (c == '<')
            qv_sbuf_printf(s, "&lt;");
        else if (c == '>')
            qv_sbuf_printf(s, "&gt;");
        else if (c < 0x20 || c == 0x7f)
            qv_sbuf_printf(s, " ");
        else
            qv_sbuf_printf(s, "%c", c);
    }
}

static void xml_text(qv_sbuf *s, const char *v)
{
    for (; *v; v++) {
        unsigned char c = (unsigned char)*v;
        if (c == '<')
            qv_sbuf_printf(s, "&lt;");
        else if (c == '>')
            qv_sbuf_printf(s, "&gt;");
        else if (c == '&')
            qv_sbuf_printf(s, "&amp;");
        else if (c == '"')
            qv_sbuf_printf(s, "&quot;");
        else if (c < 0x20 || c == 0x7f)
            qv_sbuf_printf(s, " ");
        else
            qv_sbuf_printf(s, "%c", c);
    }
}

static void fmt_bytes(uint64_t v, char *buf, size_t n)
{
    const double k = 1024.0;
    if (v < 1024)
        snprintf(buf, n, "%llu B", (unsigned long long)v);
    else if (v < 1024ull * 1024)
        snprintf(buf, n, "%.1f KiB", (double)v / k);
    else if (v < 1024ull * 1024 * 1024)
        snprintf(buf, n, "%.1f MiB", (double)v / (k * k));
    else
        snprintf(buf, n, "%.2f GiB", (double)v / (k * k * k));
}

static void fmt_time(int64_t ms, char *buf, size_t n)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (ms <= 0 || !gmtime_r(&t, &tm) || !strftime(buf, n, "%Y-%m-%d %H:%M UTC", &tm))
        snprintf(buf, n, "-");
}

static double ratio(double a, double b) { return b > 0 ? a / b : NAN; }

static double reduction(uint64_t t, uint64_t f)
{
    return f ? 1.0 - (double)t / (double)f : NAN;
}

/* ---- Markdown ------------------------------------------------------------------ */

static const char *base_of(const qv_fleet_meta *m)
{
    return m && m->base ? m->base : "fleet";
}

static int same_model_before(const qv_fleet_row *rows, size_t i)
{
    for (size_t k = 0; k < i; k++)
        if (!strcmp(rows[k].r.model, rows[i].r.model))
            return 1;
    return 0;
}

char *qv_fleet_markdown(const qv_fleet_row *rows, size_t n, const qv_fleet_meta *m)
{
    qv_sbuf s = {0};
    char gen[40], b1[32], b2[32], when[40];
    fmt_time(m ? m->generated_ms : 0, gen, sizeof gen);
    const char *bn = base_of(m);
    size_t workers = 0;
    for (size_t i = 0; i < n; i++) {
        int seen = 0;
        for (size_t k = 0; k < i && !seen; k++)
            seen = !strcmp(rows[k].worker, rows[i].worker);
        workers += !seen;
    }
    qv_sbuf_printf(&s, "# Fleet report: ternary vs 16-bit weights\n\n");
    qv_sbuf_printf(&s, "Written by `qvac report` from the bench results the scheduler stored, with "
           "`%s.json` (every figure below) and the two charts; nothing is typed by "
           "hand.\n\n", bn);
    qv_sbuf_printf(&s, "- Generated: %s from scheduler ", gen);
    md_text(&s, m && m->scheduler ? m->scheduler : "-");
    qv_sbuf_printf(&s, "\n- %zu device result%s from %zu worker%s\n", n, n == 1 ? "" : "s", workers,
       workers == 1 ? "" : "s");
    qv_sbuf_printf(&s, "- Each row: `qvac bench` on that device (a worker runs it once per device, "
           "model and qvac version after it enrolls): the same short LoRA fine-tune "
           "(rank 16, targets q,v, the same pseudo-random text) with the base weights "
           "ternary and then in 16 bits. tokens/s is the steady state (steps 2..n); "
           "peak is the device memory the run's buffers held at their peak; MFU is the "
           "step's model FLOPs over the tuned base matmul's speed at the model's "
           "shapes; tuned ÷ default is that matmul's tuned speed over its default "
           "configuration's.\n\n");
    if (!n) {
        qv_sbuf_printf(&s, "No results yet: workers send theirs once enrolled (`qvac worker` runs "
               "`qvac bench` on each device unless `--no-bench`).\n");
        return qv_sbuf_take(&s);
    }
    qv_sbuf_printf(&s, "![tokens/s](%s-tokens.svg)\n\n![peak memory](%s-memory.svg)\n", bn, bn);
    for (size_t i = 0; i < n; i++) {
        if (same_model_before(rows, i))
            continue;
        const qv_fleet_row *f0 = &rows[i];
        qv_sbuf_printf(&s, "\n## Model ");
        md_text(&s, f0->r.model);
        qv_sbuf_printf(&s, "\n\n| worker | device | backend | vendor | name | driver | tokens | "
               "tokens/s ternary | tokens/s f16 | ternary ÷ f16 | peak ternary | "
               "peak f16 | peak below f16 | MFU ternary | MFU f16 | tuned ÷ default | "
               "qvac | measured |\n"
               "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for (size_t k = i; k < n; k++) {
            const qv_fleet_row *f = &rows[k];
            const qv_bench_result *r = &f->r;
            if (strcmp(r->model, f0->r.model))
                continue;
            qv_sbuf_printf(&s, "| ");
            md_text(&s, f->worker_name[0] ? f->worker_name : f->worker);
            qv_sbuf_printf(&s, " | ");
            md_text(&s, r->device);
            qv_sbuf_printf(&s, " | ");
            md_text(&s, r->backend);
            qv_sbuf_printf(&s, " | ");
            md_text(&s, r->vendor);
            qv_sbuf_printf(&s, " | ");
            md_text(&s, r->name);
            qv_sbuf_printf(&s, " | ");
            md_text(&s, r->driver);
            fmt_bytes(r->mode[0].peak_bytes, b1, sizeof b1);
            fmt_bytes(r->mode[1].peak_bytes, b2, sizeof b2);
            fmt_time(r->measured_ms, when, sizeof when);
            qv_sbuf_printf(&s, " | %d x %d, %d steps | %.1f | %.1f | %.2fx | %s | %s | %.1f%% | %.1f%% "
                   "| %.1f%% | ", r->batch, r->seq, r->steps, r->mode[0].tokens_per_s,
               r->mode[1].tokens_per_s, ratio(r->mode[0].tokens_per_s,
                                              r->mode[1].tokens_per_s),
               b1, b2, 100 * reduction(r->mode[0].peak_bytes, r->mode[1].peak_bytes),
               100 * r->mode[0].mfu, 100 * r->mode[1].mfu);
            if (r->tuned_vs_default > 0)
                qv_sbuf_printf(&s, "%.2fx", r->tuned_vs_default);
            else
                qv_sbuf_printf(&s, "-");
            qv_sbuf_printf(&s, " | ");
            md_text(&s, r->version);
            qv_sbuf_printf(&s, " | %s |\n", when);
        }
    }
    return qv_sbuf_take(&s);
}

/* ---- JSON ------------------------------------------------------------------------ */

json_t *qv_fleet_json(const qv_fleet_row *rows, size_t n, const qv_fleet_meta *m)
{
    json_t *j = json_object(), *arr = json_array();
    if (!j || !arr) {
        json_decref(j);
        json_decref(arr);
        return NULL;
    }
    json_object_set_new(j, "generated_ms", json_integer(m ? (json_int_t)m->generated_ms
                                                          : 0));
    json_object_set_new(j, "scheduler", json_string(m && m->scheduler ? m->scheduler
                                                                      : ""));
    for (size_t i = 0; i < n; i++) {
        json_t *r = qv_bench_to_json(&rows[i].r);
        if (!r)
            continue;
        json_object_set_new(r, "worker", json_string(rows[i].worker));
        json_object_set_new(r, "worker_name", json_string(rows[i].worker_name));
        json_object_set_new(r, "received_ms", json_integer((json_int_t)rows[i].received_ms));
        json_array_append_new(arr, r);
    }
    json_object_set_new(j, "devices", arr);
    return j;
}

/* ---- SVG --------------------------------------------------------------------- */

char *qv_fleet_svg(const qv_fleet_row *rows, size_t n, int which)
{
    const int left = 300, bar = 14, gap = 10, top = 50, width = 860;
    const int plot = width - left - 90;
    int height = top + (int)n * (2 * bar + gap) + 40;
    double max = 0;
    for (size_t i = 0; i < n; i++)
        for (int w = 0; w < 2; w++) {
            double v = which ? (double)rows[i].r.mode[w].peak_bytes / (1024.0 * 1024.0)
                             : rows[i].r.mode[w].tokens_per_s;
            if (v > max)
                max = v;
        }
    if (max <= 0)
        max = 1;
    qv_sbuf s = {0};
    qv_sbuf_printf(&s, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
           "font-family=\"sans-serif\" font-size=\"12\">\n"
           "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
           "<text x=\"10\" y=\"20\" font-size=\"15\">%s</text>\n", width, height,
       which ? "Peak device memory of the fine-tune (MiB; less is better)"
             : "Steady-state LoRA training throughput (tokens/s; more is better)");
    static const char *colour[2] = {"#2b7bb9", "#e08a2c"};
    static const char *label[2] = {"ternary", "f16"};
    for (int w = 0; w < 2; w++)
        qv_sbuf_printf(&s, "<rect x=\"%d\" y=\"30\" width=\"12\" height=\"12\" fill=\"%s\"/>"
               "<text x=\"%d\" y=\"40\">%s</text>\n", left + w * 90, colour[w],
           left + w * 90 + 16, label[w]);
    for (size_t i = 0; i < n; i++) {
        const qv_bench_result *r = &rows[i].r;
        int y = top + (int)i * (2 * bar + gap);
        qv_sbuf_printf(&s, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">", left - 8, y + bar + 4);
        xml_text(&s, rows[i].worker_name[0] ? rows[i].worker_name : rows[i].worker);
        qv_sbuf_printf(&s, " ");
        xml_text(&s, r->device);
        qv_sbuf_printf(&s, " (");
        xml_text(&s, r->model);
        qv_sbuf_printf(&s, ")</text>\n");
        for (int w = 0; w < 2; w++) {
            double v = which ? (double)r->mode[w].peak_bytes / (1024.0 * 1024.0)
                             : r->mode[w].tokens_per_s;
            double len = plot * v / max;
            qv_sbuf_printf(&s, "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\"/>"
                   "<text x=\"%.1f\" y=\"%d\">%.1f</text>\n", left, y + w * bar, len,
               bar - 1, colour[w], left + len + 4, y + w * bar + bar - 3, v);
        }
    }
    qv_sbuf_printf(&s, "</svg>\n");
    return qv_sbuf_take(&s);
}

/* ---- HTML -------------------------------------------------------------------- */

char *qv_fleet_html(const qv_fleet_row *rows, size_t n, const qv_fleet_meta *m)
{
    qv_sbuf s = {0};
    char gen[40], b1[32], b2[32], when[40];
    fmt_time(m ? m->generated_ms : 0, gen, sizeof gen);
    qv_sbuf_printf(&s, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
           "<title>qvac fleet: ternary vs 16-bit</title><style>"
           "body{font-family:sans-serif;margin:2em;color:#222}"
           "table{border-collapse:collapse;margin:1em 0}"
           "th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}"
           "th:nth-child(-n+4),td:nth-child(-n+4){text-align:left}"
           "</style></head><body>\n<h1>Fleet report: ternary vs 16-bit weights</h1>\n"
           "<p id=\"summary\">%zu device result%s; generated %s from scheduler ",
       n, n == 1 ? "" : "s", gen);
    xml_text(&s, m && m->scheduler ? m->scheduler : "-");
    qv_sbuf_printf(&s, ". Each row is <code>qvac bench</code> on that device: the same short LoRA "
           "fine-tune with ternary and with 16-bit base weights.</p>\n");
    if (!n) {
        qv_sbuf_printf(&s, "<p>No results yet: workers send theirs once enrolled.</p>\n");
    } else {
        char *t = qv_fleet_svg(rows, n, 0), *mm = qv_fleet_svg(rows, n, 1);
        qv_sbuf_printf(&s, "<figure id=\"tokens\">%s</figure>\n<figure id=\"memory\">%s</figure>\n",
           t ? t : "", mm ? mm : "");
        free(t);
        free(mm);
    }
    for (size_t i = 0; i < n; i++) {
        if (same_model_before(rows, i))
            continue;
        qv_sbuf_printf(&s, "<h2>Model ");
        xml_text(&s, rows[i].r.model);
        qv_sbuf_printf(&s, "</h2>\n<table><tr><th>worker</th><th>device</th><th>backend</th>"
               "<th>name</th><th>tokens/s ternary</th><th>tokens/s f16</th>"
               "<th>ternary / f16</th><th>peak ternary</th><th>peak f16</th>"
               "<th>peak below f16</th><th>MFU ternary</th><th>tuned / default</th>"
               "<th>measured</th></tr>\n");
        for (size_t k = i; k < n; k++) {
            const qv_bench_result *r = &rows[k].r;
            if (strcmp(r->model, rows[i].r.model))
                continue;
            qv_sbuf_printf(&s, "<tr><td>");
            xml_text(&s, rows[k].worker_name[0] ? rows[k].worker_name : rows[k].worker);
            qv_sbuf_printf(&s, "</td><td>");
            xml_text(&s, r->device);
            qv_sbuf_printf(&s, "</td><td>");
            xml_text(&s, r->backend);
            qv_sbuf_printf(&s, "</td><td>");
            xml_text(&s, r->name);
            fmt_bytes(r->mode[0].peak_bytes, b1, sizeof b1);
            fmt_bytes(r->mode[1].peak_bytes, b2, sizeof b2);
            fmt_time(r->measured_ms, when, sizeof when);
            qv_sbuf_printf(&s, "</td><td>%.1f</td><td>%.1f</td><td>%.2fx</td><td>%s</td><td>%s</td>"
                   "<td>%.1f%%</td><td>%.1f%%</td><td>",
               r->mode[0].tokens_per_s, r->mode[1].tokens_per_s,
               ratio(r->mode[0].tokens_per_s, r->mode[1].tokens_per_s), b1, b2,
               100 * reduction(r->mode[0].peak_bytes, r->mode[1].peak_bytes),
               100 * r->mode[0].mfu);
            if (r->tuned_vs_default > 0)
                qv_sbuf_printf(&s, "%.2fx", r->tuned_vs_default);
            else
                qv_sbuf_printf(&s, "-");
            qv_sbuf_printf(&s, "</td><td>%s</td></tr>\n", when);
        }
        qv_sbuf_printf(&s, "</table>\n");
    }
    qv_sbuf_printf(&s, "<p><a href=\"/metrics\">/metrics</a> (Prometheus)</p>\n</body></html>\n");
    return qv_sbuf_take(&s);
}

/* ---- files ------------------------------------------------------------------- */

static int mkdirs(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    size_t n = strlen(tmp);
    for (size_t i = 1; i <= n; i++)
        if (tmp[i] == '/' || tmp[i] == 0) {
            char c = tmp[i];
            tmp[i] = 0;
            if (mkdir(tmp, 0755) && errno != EEXIST)
                return -1;
            tmp[i] = c;
        }
    return 0;
}

static int wants(const char *formats, const char *f)
{
    if (!formats)
        return 1;
    size_t n = strlen(f);
    for (const char *p = formats; *p;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (len == n && !strncmp(p, f, n))
            return 1;
        p += len + (c ? 1 : 0);
    }
    return 0;
}

static qv_status put(const char *dir, const char *base, const char *suffix, char *text,
                     char *written, size_t cap, qv_err *err)
{
    if (!text)
        return qv_fail(err, QV_ERR_NOMEM, "report: out of memory");
    char path[4200];
    snprintf(path, sizeof path, "%s/%s%s", dir, base, suffix);
    qv_file_part part = {text, strlen(text)};
    qv_status s = qv_file_write_atomic(path, "the fleet report", &part, 1, err);
    free(text);
    if (!s && written) {
        size_t l = strlen(written);
        snprintf(written + l, cap - l, "%s%s", l ? ", " : "", path);
    }
    return s;
}

qv_status qv_fleet_write(const qv_fleet_row *rows, size_t n, const qv_fleet_meta *m,
                         const char *dir, const char *formats, char *written,
                         size_t written_cap, qv_err *err)
{
    if (!dir)
        return qv_fail(err, QV_ERR_INVALID, "report: no folder");
    for (const char *p = formats; p && *p;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (!((len == 2 && !strncmp(p, "md", 2)) || (len == 4 && !strncmp(p, "json", 4)) ||
              (len == 3 && !strncmp(p, "svg", 3))))
            return qv_fail(err, QV_ERR_INVALID, "report: format '%.*s': use md, json "
                           "or svg (comma-separated)", (int)len, p);
        p += len + (c ? 1 : 0);
    }
    if (mkdirs(dir))
        return qv_fail(err, QV_ERR_IO, "report: cannot create folder %s: %s", dir,
                       strerror(errno));
    if (written && written_cap)
        written[0] = 0;
    const char *bn = base_of(m);
    qv_status s = QV_OK;
    if (wants(formats, "md"))
        s = put(dir, bn, ".md", qv_fleet_markdown(rows, n, m), written, written_cap, err);
    if (!s && wants(formats, "json")) {
        json_t *j = qv_fleet_json(rows, n, m);
        char *t = j ? json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
        json_decref(j);
        if (t) {
            size_t l = strlen(t);
            char *u = realloc(t, l + 2);
            if (u) {
                u[l] = '\n';
                u[l + 1] = 0;
                t = u;
            }
        }
        s = put(dir, bn, ".json", t, written, written_cap, err);
    }
    if (!s && wants(formats, "svg"))
        s = put(dir, bn, "-tokens.svg", qv_fleet_svg(rows, n, 0), written, written_cap,
                err);
    if (!s && wants(formats, "svg"))
        s = put(dir, bn, "-memory.svg", qv_fleet_svg(rows, n, 1), written, written_cap,
                err);
    return s;
}
