/* The hot string scans of the built-in plugins in C (icdreward_plugins._scan_native).
 *
 * The same values as the Python statements that define them.
 *
 * well_formed_rows is the tag parser's fast path for a batch, for any string: the rows of
 * the well-formed completions whose ending the parser has seen before (nearly all of a
 * training batch), built without a Python call per text; the parser's
 * TagParser._well_formed_row defines each row and builds the rest.
 *
 * trace_counts serves the reasoning reward, for ASCII traces only: a trace with any
 * other character gets None, and the caller uses Python. That keeps every case rule (str.lower, str.strip, str.count) exact without
 * restating Unicode here, and model traces are ASCII nearly always. The Python
 * statement of the counts is already C-level string work, but it makes a dozen passes
 * over each trace (one per salient term, a lower() copy, a split, two counts); here the
 * short terms (all the reasoning reward uses) are found in one pass, with no lowered copy.
 *
 * Every scan is linear in the length of its text (on Windows, which has no memmem,
 * a term longer than 16 characters costs up to its length per position).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#if defined(_MSC_VER)
#include <intrin.h>
static int lowest_bit(uint64_t m)
{
    unsigned long i;
    _BitScanForward64(&i, m);
    return (int)i;
}
#else
static int lowest_bit(uint64_t m) { return __builtin_ctzll(m); }
#endif

/* ASCII characters that str.strip() removes (str.isspace() on ASCII). */
static int is_space(unsigned char c)
{
    return c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f);
}

static unsigned char fold(unsigned char c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

/* str.count(" ") + str.count("\n"). */
static Py_ssize_t count_blanks(const unsigned char *s, Py_ssize_t n)
{
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        k += (s[i] == ' ') + (s[i] == '\n');
    return k;
}

/* First occurrence of pat (m >= 1 bytes) in s[0:n], or NULL. */
static const unsigned char *find(const unsigned char *s, Py_ssize_t n, const unsigned char *pat,
                                 Py_ssize_t m)
{
#if defined(_WIN32)
    /* No memmem: memchr on the first byte, then compare (O(n * m) at worst). */
    const unsigned char *end = s + n - m + 1;
    while (s < end) {
        const unsigned char *hit = memchr(s, pat[0], (size_t)(end - s));
        if (hit == NULL)
            return NULL;
        if (memcmp(hit, pat, (size_t)m) == 0)
            return hit;
        s = hit + 1;
    }
    return NULL;
#else
    return memmem(s, (size_t)n, pat, (size_t)m);
#endif
}

/* trace.count(trace[-tail:]): occurrences of the last `tail` characters, not overlapping. */
static Py_ssize_t count_tail(const unsigned char *s, Py_ssize_t n, Py_ssize_t tail)
{
    if (n <= tail)
        return 1; /* the tail is the whole trace ("".count("") is 1 as well) */
    const unsigned char *pat = s + n - tail;
    Py_ssize_t count = 0, i = 0;
    while (n - i >= tail) {
        const unsigned char *hit = find(s + i, n - i, pat, tail);
        if (hit == NULL)
            break;
        count++;
        i = (hit - s) + tail;
    }
    return count;
}

/* A 64-bit hash of p[0:len], eight bytes a step (a byte at a time, the multiply chain
 * would cost more than everything else here together). */
static uint64_t hash_bytes(const unsigned char *p, Py_ssize_t len)
{
    const uint64_t k = 0x9E3779B97F4A7C15ULL;
    uint64_t h = (uint64_t)len * k, w;
    for (; len >= 8; p += 8, len -= 8) {
        memcpy(&w, p, 8);
        h = (h ^ w) * k;
        h ^= h >> 29;
    }
    w = 0;
    memcpy(&w, p, (size_t)len);
    h = (h ^ w) * k;
    /* The final mix (MurmurHash3's): the table indexes by the low bits, and parts that
     * differ only in their last bytes must not share them. */
    h ^= h >> 33;
    h *= 0xFF51AFD7ED558CCDULL;
    h ^= h >> 33;
    h *= 0xC4CEB9FE1A85EC53ULL;
    return h ^ (h >> 33);
}

/* The parts of s.split(".") at least `min_chars` long: how many, and how many distinct
 * after strip(). The stripped parts are gathered first, so that the open-addressing
 * table of distinct ones can be sized to their number. */
typedef struct {
    const unsigned char *p;
    Py_ssize_t len; /* -1: free slot */
    uint64_t hash;
} Slot;

#define LOCAL_SLOTS 128

static int count_sentences(const unsigned char *s, Py_ssize_t n, Py_ssize_t min_chars,
                           Py_ssize_t *sentences, Py_ssize_t *distinct)
{
    Slot local_parts[LOCAL_SLOTS / 2], local_table[LOCAL_SLOTS];
    Slot *parts = local_parts, *table = local_table;
    size_t capacity = LOCAL_SLOTS / 2, total = 0;
    int status = -1;

    for (Py_ssize_t start = 0;;) {
        const unsigned char *dot = memchr(s + start, '.', (size_t)(n - start));
        Py_ssize_t end = dot ? dot - s : n;
        if (end - start >= min_chars) {
            if (total == capacity) {
                Slot *grown = PyMem_Malloc(2 * capacity * sizeof(Slot));
                if (grown == NULL) {
                    PyErr_NoMemory();
                    goto done;
                }
                memcpy(grown, parts, capacity * sizeof(Slot));
                if (parts != local_parts)
                    PyMem_Free(parts);
                parts = grown;
                capacity *= 2;
            }
            Py_ssize_t a = start, b = end;
            while (a < b && is_space(s[a]))
                a++;
            while (b > a && is_space(s[b - 1]))
                b--;
            parts[total++] = (Slot){s + a, b - a, hash_bytes(s + a, b - a)};
        }
        if (!dot)
            break;
        start = end + 1;
    }

    size_t size = 16;
    while (size < 2 * total)
        size *= 2;
    if (size > LOCAL_SLOTS) {
        table = PyMem_Malloc(size * sizeof(Slot));
        if (table == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    }
    for (size_t i = 0; i < size; i++)
        table[i].len = -1;
    Py_ssize_t count = 0;
    for (size_t i = 0; i < total; i++) {
        const Slot *part = &parts[i];
        for (size_t k = (size_t)part->hash & (size - 1);; k = (k + 1) & (size - 1)) {
            Slot *slot = &table[k];
            if (slot->len < 0) {
                *slot = *part;
                count++;
                break;
            }
            if (slot->hash == part->hash && slot->len == part->len &&
                memcmp(slot->p, part->p, (size_t)part->len) == 0)
                break;
        }
    }
    *sentences = (Py_ssize_t)total;
    *distinct = count;
    status = 0;
done:
    if (parts != local_parts)
        PyMem_Free(parts);
    if (table != local_table)
        PyMem_Free(table);
    return status;
}

/* For each term, whether `term in s.lower()`: hits[g] counts the hits of group g.
 *
 * Terms of two or more characters are found together, up to 64 a pass: a position can
 * start term j only if bit j is set in first[s[i]] and second[s[i + 1]] (and in
 * third[s[i + 2]] for a longer term), which rules out nearly every position with a few
 * table loads and no branch. The tables hold both cases of
 * each letter, so the trace is never lowered; candidates are compared case-folded. */
#define MAX_TERMS 64

typedef struct {
    const unsigned char *p;
    Py_ssize_t len;
    int group;
} Term;

/* Marks `bit` for character c and, for a lower-case letter, its capital. */
static void set_bits(uint64_t *table, unsigned char c, uint64_t bit)
{
    table[c] |= bit;
    if (c >= 'a' && c <= 'z')
        table[c - 32] |= bit;
}

/* Compares the candidate terms `m` at position i; returns `pending` less those found. */
static uint64_t confirm(const unsigned char *s, Py_ssize_t n, Py_ssize_t i, uint64_t m,
                        const Term *terms, uint64_t pending, Py_ssize_t *hits)
{
    while (m) {
        int j = lowest_bit(m);
        m &= m - 1;
        const Term *t = &terms[j];
        if (t->len > n - i)
            continue;
        Py_ssize_t k = 2;
        while (k < t->len && fold(s[i + k]) == t->p[k])
            k++;
        if (k == t->len) {
            pending &= ~((uint64_t)1 << j);
            hits[t->group]++;
        }
    }
    return pending;
}

static void scan_terms(const unsigned char *s, Py_ssize_t n, const Term *terms, int count,
                       Py_ssize_t *hits)
{
    uint64_t first[256], second[256], third[257];
    memset(first, 0, sizeof(first));
    memset(second, 0, sizeof(second));
    memset(third, 0, sizeof(third));
    for (int j = 0; j < count; j++) {
        uint64_t bit = (uint64_t)1 << j;
        set_bits(first, terms[j].p[0], bit);
        set_bits(second, terms[j].p[1], bit);
        if (terms[j].len > 2)
            set_bits(third, terms[j].p[2], bit);
        else
            /* Any third character, or none: the end of the text reads as entry 256. */
            for (int c = 0; c < 257; c++)
                third[c] |= bit;
    }
    uint64_t pending = count == 64 ? ~(uint64_t)0 : (((uint64_t)1 << count) - 1);
    Py_ssize_t i = 0;
    for (; i + 2 < n && pending; i++) {
        uint64_t m = first[s[i]] & second[s[i + 1]] & third[s[i + 2]] & pending;
        if (m)
            pending = confirm(s, n, i, m, terms, pending, hits);
    }
    if (i + 2 == n && pending) {
        uint64_t m = first[s[i]] & second[s[i + 1]] & third[256] & pending;
        if (m)
            confirm(s, n, i, m, terms, pending, hits);
    }
}

/* A term that can occur in an ASCII lowered text: ASCII with no capital letter. */
static int can_occur(const unsigned char *p, Py_ssize_t len)
{
    for (Py_ssize_t i = 0; i < len; i++)
        if (p[i] >= 'A' && p[i] <= 'Z')
            return 0;
    return 1;
}

/* Terms longer than this are looked for one at a time, with memmem in a lowered copy of
 * the trace: the shared pass compares each candidate character by character, which is
 * linear in the trace only for a bounded term length. The reasoning reward's stems have
 * at most six characters, so the copy is rarely made. */
#define SHORT_TERM 16

static int count_terms(const unsigned char *s, Py_ssize_t n, PyObject *const *groups,
                       Py_ssize_t *hits)
{
    /* Tuples hold their terms and cannot change: no Python code that gathering the
     * second group may run (a generator, a __del__) can free a term of the first. */
    PyObject *tuples[2] = {NULL, NULL};
    unsigned char *lowered = NULL;
    int status = -1;
    for (int g = 0; g < 2; g++)
        if ((tuples[g] = PySequence_Tuple(groups[g])) == NULL)
            goto done;

    Term batch[MAX_TERMS];
    int count = 0;
    for (int g = 0; g < 2; g++) {
        hits[g] = 0;
        for (Py_ssize_t t = 0; t < PyTuple_GET_SIZE(tuples[g]); t++) {
            PyObject *term = PyTuple_GET_ITEM(tuples[g], t);
            if (!PyUnicode_Check(term)) {
                PyErr_Format(PyExc_TypeError, "terms must be str, not %.100s",
                             Py_TYPE(term)->tp_name);
                goto done;
            }
#if PY_VERSION_HEX < 0x030C0000
            if (PyUnicode_READY(term) < 0)
                goto done;
#endif
            if (!PyUnicode_IS_ASCII(term))
                continue; /* never in an ASCII text */
            const unsigned char *p = PyUnicode_1BYTE_DATA(term);
            Py_ssize_t len = PyUnicode_GET_LENGTH(term);
            if (len > n || !can_occur(p, len))
                continue;
            if (len == 0) {
                hits[g]++;
                continue;
            }
            if (len == 1) {
                unsigned char c = p[0];
                int upper = c >= 'a' && c <= 'z';
                hits[g] += memchr(s, c, (size_t)n) != NULL ||
                           (upper && memchr(s, c - 32, (size_t)n) != NULL);
                continue;
            }
            if (len > SHORT_TERM) {
                if (lowered == NULL) {
                    if ((lowered = PyMem_Malloc((size_t)n)) == NULL) {
                        PyErr_NoMemory();
                        goto done;
                    }
                    for (Py_ssize_t i = 0; i < n; i++)
                        lowered[i] = fold(s[i]);
                }
                hits[g] += find(lowered, n, p, len) != NULL;
                continue;
            }
            batch[count++] = (Term){p, len, g};
            if (count == MAX_TERMS) {
                scan_terms(s, n, batch, count, hits);
                count = 0;
            }
        }
    }
    if (count)
        scan_terms(s, n, batch, count, hits);
    status = 0;
done:
    PyMem_Free(lowered);
    Py_XDECREF(tuples[0]);
    Py_XDECREF(tuples[1]);
    return status;
}

PyDoc_STRVAR(trace_counts_doc,
             "trace_counts(trace, note_terms, code_terms, sentence_chars, tail_chars, /)\n"
             "--\n\n"
             "The counts of icdreward_plugins._scan.trace_counts for an ASCII\n"
             "trace, or None for any other trace.");

static PyObject *trace_counts(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError, "trace_counts() takes 5 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *trace = args[0];
    if (!PyUnicode_Check(trace)) {
        PyErr_Format(PyExc_TypeError, "trace must be str, not %.100s", Py_TYPE(trace)->tp_name);
        return NULL;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(trace) < 0)
        return NULL;
#endif
    /* Clamped: an int beyond Py_ssize_t compares and slices like the nearest bound. */
    Py_ssize_t sentence_chars = PyNumber_AsSsize_t(args[3], NULL);
    if (sentence_chars == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t tail_chars = PyNumber_AsSsize_t(args[4], NULL);
    if (tail_chars == -1 && PyErr_Occurred())
        return NULL;
    if (tail_chars < 1) {
        PyErr_SetString(PyExc_ValueError, "tail_chars must be at least 1");
        return NULL;
    }
    if (!PyUnicode_IS_ASCII(trace))
        Py_RETURN_NONE;

    const unsigned char *s = PyUnicode_1BYTE_DATA(trace);
    Py_ssize_t n = PyUnicode_GET_LENGTH(trace);
    Py_ssize_t sentences, distinct, hits[2];
    if (count_sentences(s, n, sentence_chars, &sentences, &distinct) < 0)
        return NULL;
    if (count_terms(s, n, args + 1, hits) < 0)
        return NULL;
    return Py_BuildValue("(nnnnnn)", count_blanks(s, n), sentences, distinct,
                         count_tail(s, n, tail_chars), hits[0], hits[1]);
}

PyDoc_STRVAR(well_formed_rows_doc,
             "well_formed_rows(texts, endings, ending_chars, /)\n"
             "--\n\n"
             "(rows, misses): TagParser._well_formed_row of each text where the\n"
             "endings memo answers it; misses lists the indices it does not answer\n"
             "(their rows are None, to be computed in Python).");

/* The first '<' of a string and the span of the string before it with str.strip()'s
 * whitespace (Py_UNICODE_ISSPACE, whatever the kind of string) removed from both ends. */
static void think_span(PyObject *text, Py_ssize_t *t1, Py_ssize_t *start, Py_ssize_t *end)
{
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text), lt = -1;
    if (kind == PyUnicode_1BYTE_KIND) {
        const unsigned char *hit = memchr(data, '<', (size_t)n);
        lt = hit ? hit - (const unsigned char *)data : -1;
    } else {
        for (Py_ssize_t i = 0; i < n; i++)
            if (PyUnicode_READ(kind, data, i) == '<') {
                lt = i;
                break;
            }
    }
    Py_ssize_t a = 0, b = lt > 0 ? lt : 0;
    while (a < b && Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, a)))
        a++;
    while (b > a && Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, b - 1)))
        b--;
    *t1 = lt;
    *start = a;
    *end = b;
}

enum { ROW_NONE, ROW_MISS, ROW_DONE, ROW_ERROR };

/* One text's row (a new reference in *row) as TagParser._well_formed_row builds it:
 * (start, end, diagnosis, candidate, code, head + the five spans packed as int32).
 * The memo maps the text from its first '<' on to (diagnosis, candidate, code, head,
 * d0, d1), or to None when that ending is not well formed. */
static int well_formed_row(PyObject *text, PyObject *endings, Py_ssize_t ending_chars,
                           PyObject **row)
{
    Py_ssize_t t1, start, end, n = PyUnicode_GET_LENGTH(text);
    think_span(text, &t1, &start, &end);
    if (t1 <= 0)
        return ROW_NONE;
    if (n - t1 > ending_chars || n > INT32_MAX)
        return ROW_MISS; /* not memoized (or past what the row's int32 spans hold) */
    PyObject *key = PyUnicode_Substring(text, t1, n);
    if (key == NULL)
        return ROW_ERROR;
    PyObject *known = PyDict_GetItemWithError(endings, key);
    Py_DECREF(key);
    if (known == NULL)
        return PyErr_Occurred() ? ROW_ERROR : ROW_MISS;
    if (known == Py_None)
        return ROW_NONE;
    if (!PyTuple_CheckExact(known) || PyTuple_GET_SIZE(known) != 6 ||
        !PyBytes_CheckExact(PyTuple_GET_ITEM(known, 3))) {
        PyErr_SetString(PyExc_TypeError, "endings values must be 6-tuples with bytes heads");
        return ROW_ERROR;
    }
    Py_INCREF(known); /* held while allocating: a collection must not free it */
    int status = ROW_ERROR;
    PyObject *head = PyTuple_GET_ITEM(known, 3);
    Py_ssize_t d0 = PyLong_AsSsize_t(PyTuple_GET_ITEM(known, 4));
    if (d0 == -1 && PyErr_Occurred())
        goto done;
    Py_ssize_t d1 = PyLong_AsSsize_t(PyTuple_GET_ITEM(known, 5));
    if (d1 == -1 && PyErr_Occurred())
        goto done;
    /* The block's offsets lie in the ending, which keeps every span within int32. */
    if (d0 < 0 || d1 < d0 || d1 > n - t1) {
        PyErr_SetString(PyExc_ValueError, "endings value has offsets outside its ending");
        goto done;
    }
    int32_t spans[5] = {(int32_t)t1, (int32_t)(t1 + d0), (int32_t)(t1 + d1), (int32_t)n,
                        (int32_t)(end - start)};
    Py_ssize_t head_size = PyBytes_GET_SIZE(head);
    PyObject *features = PyBytes_FromStringAndSize(NULL, head_size + (Py_ssize_t)sizeof(spans));
    if (features == NULL)
        goto done;
    memcpy(PyBytes_AS_STRING(features), PyBytes_AS_STRING(head), (size_t)head_size);
    memcpy(PyBytes_AS_STRING(features) + head_size, spans, sizeof(spans));
    PyObject *first = PyLong_FromSsize_t(start), *last = PyLong_FromSsize_t(end);
    PyObject *out = first && last ? PyTuple_New(6) : NULL;
    if (out == NULL) {
        Py_XDECREF(first);
        Py_XDECREF(last);
        Py_DECREF(features);
        goto done;
    }
    PyTuple_SET_ITEM(out, 0, first);
    PyTuple_SET_ITEM(out, 1, last);
    for (int k = 0; k < 3; k++) {
        PyObject *item = PyTuple_GET_ITEM(known, k);
        Py_INCREF(item);
        PyTuple_SET_ITEM(out, 2 + k, item);
    }
    PyTuple_SET_ITEM(out, 5, features);
    *row = out;
    status = ROW_DONE;
done:
    Py_DECREF(known);
    return status;
}

static PyObject *well_formed_rows(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "well_formed_rows() takes 3 arguments (%zd given)",
                     nargs);
        return NULL;
    }
    if (!PyDict_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "endings must be a dict");
        return NULL;
    }
    Py_ssize_t ending_chars = PyNumber_AsSsize_t(args[2], NULL);
    if (ending_chars == -1 && PyErr_Occurred())
        return NULL;
    /* A tuple holds the texts and cannot change: a list could be changed by a __del__
     * that an allocation below sets off through the garbage collector. */
    PyObject *texts = PySequence_Tuple(args[0]);
    if (texts == NULL)
        return NULL;
    Py_ssize_t size = PyTuple_GET_SIZE(texts);
    PyObject *misses = PyList_New(0), *rows = NULL, *result = NULL;
    if (misses == NULL || (rows = PyList_New(size)) == NULL)
        goto done;
    /* Out of the collector's sight until every slot is filled (and untracked before
     * anything else is allocated): a __del__ run by a collection could otherwise find
     * the list (gc.get_objects) and read an empty slot. */
    PyObject_GC_UnTrack(rows);
    for (Py_ssize_t i = 0; i < size; i++) {
        PyObject *text = PyTuple_GET_ITEM(texts, i), *row = Py_None;
        /* Exactly str, as the parser's `type(v) is str`: a subclass takes the slow path. */
        int status = ROW_NONE;
        if (PyUnicode_CheckExact(text)) {
#if PY_VERSION_HEX < 0x030C0000
            if (PyUnicode_READY(text) < 0)
                goto done;
#endif
            status = well_formed_row(text, args[1], ending_chars, &row);
        }
        if (status == ROW_ERROR)
            goto done;
        if (status == ROW_MISS) {
            PyObject *index = PyLong_FromSsize_t(i);
            int failed = index == NULL || PyList_Append(misses, index) < 0;
            Py_XDECREF(index);
            if (failed)
                goto done;
        }
        if (status != ROW_DONE)
            Py_INCREF(Py_None);
        PyList_SET_ITEM(rows, i, row);
    }
    PyObject_GC_Track(rows);
    result = PyTuple_Pack(2, rows, misses);
done:
    Py_XDECREF(rows);
    Py_XDECREF(misses);
    Py_DECREF(texts);
    return result;
}

static PyMethodDef methods[] = {
    {"well_formed_rows", (PyCFunction)(void (*)(void))well_formed_rows, METH_FASTCALL,
     well_formed_rows_doc},
    {"trace_counts", (PyCFunction)(void (*)(void))trace_counts, METH_FASTCALL, trace_counts_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "icdreward_plugins._scan_native",
    .m_doc = "The hot string scans of the built-in plugins in C (see _scan.py).",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__scan_native(void) { return PyModule_Create(&module); }
